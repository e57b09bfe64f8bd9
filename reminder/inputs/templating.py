"""Staff-edited Jinja2 templates: sandboxed, strict, and checked before anything is sent."""

from __future__ import annotations

import re
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from jinja2 import (
    BaseLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateNotFound,
    TemplateSyntaxError,
    meta,
    select_autoescape,
)
from jinja2 import (
    TemplateError as JinjaError,
)
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..core.errors import Problem, TemplateError
from ..core.mailing import RECORDED_KINDS, MailKind

PARTS = {"subject": ".subject.txt", "text": ".txt", "html": ".html"}
# Each kind of mail has its three templates: reminder.*, cancellation.*, update.*
KINDS = RECORDED_KINDS
VARIABLES = frozenset(
    {
        "cycle",
        "organizer",
        "contact",
        "session",
        "registrant",
        "reminder",
        "upcoming",
        "unsubscribe",
        "choices",  # the registrant's signed links: decline this session, their sessions
        "add_to_calendar",  # links that add the session to Google Agenda and Outlook.com
        "language",
        "notice",  # cancellation and update templates only
    }
)
# The sandbox bounds what a template may touch, not how big it is: we do.
MAX_TEMPLATE_BYTES = 256 * 1024


class _BoundedLoader(FileSystemLoader):
    def get_source(
        self, environment: Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        source, filename, uptodate = super().get_source(environment, template)
        if len(source.encode()) > MAX_TEMPLATE_BYTES:
            raise TemplateError(
                [
                    Problem(
                        filename,
                        f"is larger than {MAX_TEMPLATE_BYTES // 1024} KiB; "
                        "a mail template never needs to be",
                    )
                ]
            )
        return source, filename, uptodate


class Templates:
    """The templates of one folder, optionally with a sub-folder per language."""

    def __init__(self, folder: Path, language: str) -> None:
        self.folder = folder
        self.language = language
        self._environments: dict[str, Environment] = {}
        self._names: dict[tuple[str, str, str], str] = {}
        if not folder.is_dir():
            raise TemplateError(
                [Problem(str(folder), "the templates folder does not exist; fix paths.templates")]
            )

    def speaks(self, language: str) -> bool:
        """True for the cycle's language, and for any with a sub-folder of its own."""
        return language == self.language or (self.folder / language).is_dir()

    def environment(self, language: str) -> Environment:
        if language not in self._environments:
            search = [str(self.folder / language), str(self.folder)]
            loader: BaseLoader = _BoundedLoader([p for p in search if Path(p).is_dir()])
            self._environments[language] = ImmutableSandboxedEnvironment(
                loader=loader,
                undefined=StrictUndefined,
                autoescape=select_autoescape(["html", "htm"], default_for_string=False),
                keep_trailing_newline=True,
                # A snapshot renders the templates it validated, not a file saved since.
                auto_reload=False,
                trim_blocks=True,
                lstrip_blocks=True,
            )
        return self._environments[language]

    def name(self, part: str, lead: str, language: str, kind: MailKind = MailKind.REMINDER) -> str:
        """The variant for this lead ('reminder-1h.txt') when there is one, else the base."""
        if (part, f"{kind}:{lead}", language) not in self._names:
            base = kind + PARTS[part]
            variant = f"{kind}-{lead}{PARTS[part]}"
            templates = self.environment(language).list_templates()
            found = variant if lead and variant in templates else base
            self._names[part, f"{kind}:{lead}", language] = found
        return self._names[part, f"{kind}:{lead}", language]

    def render(
        self,
        part: str,
        lead: str,
        language: str,
        context: Mapping[str, Any],
        kind: MailKind = MailKind.REMINDER,
    ) -> str:
        name = self.name(part, lead, language, kind)
        environment = self.environment(language)
        try:
            return environment.get_template(name).render(context)
        except TemplateError:
            raise
        except TemplateSyntaxError as exc:
            raise TemplateError([_syntax_problem(self.folder, exc)]) from None
        except JinjaError as exc:
            filename, line = _where(self.folder, name, exc)
            raise TemplateError(
                [Problem(filename, f"{exc} (while rendering)", line=line)]
            ) from None

    def check(self) -> list[Problem]:
        """Every template parses, stays small and uses only the documented variables."""
        problems: list[Problem] = []
        for kind in KINDS:
            for part, suffix in PARTS.items():
                if not (self.folder / (kind + suffix)).is_file():
                    problems.append(
                        Problem(
                            str(self.folder / (kind + suffix)),
                            f"the {part} template of the {kind} mail is missing",
                        )
                    )
        environment = self.environment(self.language)
        for path in sorted(self.folder.rglob("*")):
            if path.suffix not in (".txt", ".html") or not path.is_file():
                continue
            source = path.read_text(encoding="utf-8", errors="replace")
            if len(source.encode()) > MAX_TEMPLATE_BYTES:
                problems.append(
                    Problem(str(path), f"is larger than {MAX_TEMPLATE_BYTES // 1024} KiB")
                )
                continue
            try:
                tree = environment.parse(source, name=path.name, filename=str(path))
            except TemplateSyntaxError as exc:
                problems.append(_syntax_problem(self.folder, exc))
                continue
            for unknown in sorted(meta.find_undeclared_variables(tree) - VARIABLES):
                problems.append(
                    Problem(
                        str(path),
                        f"unknown variable {unknown!r}; templates may use "
                        f"{', '.join(sorted(VARIABLES))}",
                        line=_first_line(source, unknown),
                    )
                )
            for referenced in meta.find_referenced_templates(tree):
                if referenced is not None:
                    try:
                        environment.get_template(referenced)
                    except TemplateNotFound:
                        problems.append(
                            Problem(
                                str(path),
                                f"refers to {referenced!r}, which does not exist in the "
                                "templates folder",
                            )
                        )
                    except (JinjaError, TemplateError):
                        pass  # reported when that template itself is checked
        return problems


def _syntax_problem(folder: Path, exc: TemplateSyntaxError) -> Problem:
    filename: str = exc.filename or str(folder / (exc.name or "?"))
    return Problem(filename, f"template syntax error: {exc.message}", line=exc.lineno)


def _where(folder: Path, name: str, exc: BaseException) -> tuple[str, int | None]:
    """The template file and line a rendering error came from (Jinja rewrites tracebacks)."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.startswith(str(folder)):
            return frame.filename, frame.lineno
    return str(folder / name), None


def _first_line(source: str, name: str) -> int | None:
    match = re.search(rf"\b{re.escape(name)}\b", source)
    return source.count("\n", 0, match.start()) + 1 if match else None
