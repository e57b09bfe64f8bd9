"""What a command answers: lines for people, in order, and the exit status."""

from __future__ import annotations

from dataclasses import dataclass, field

# The exit statuses, as the README's table documents them.
OK, FAILED, USAGE_ERROR, INTERRUPTED, CLOSED_PIPE = 0, 1, 2, 130, 141


@dataclass
class Answer:
    """Built by a command of the library; the command line prints it and exits with `status`.

    `lines` holds (to_stderr, text) in the order they are to be shown: results go to
    stdout, notes and problems to stderr.
    """

    lines: list[tuple[bool, str]] = field(default_factory=list)
    status: int = OK

    def say(self, text: str) -> Answer:
        self.lines.append((False, text))
        return self

    def note(self, text: str) -> Answer:
        self.lines.append((True, text))
        return self

    def fail(self, when: bool = True) -> Answer:
        if when:
            self.status = FAILED
        return self

    @property
    def out(self) -> str:
        """Only what goes to stdout, for tests and callers that want the result alone."""
        return "\n".join(text for to_stderr, text in self.lines if not to_stderr)
