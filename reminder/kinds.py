"""The kinds of change notice: here, apart, so the command line names them without importing
the notice machinery (`reminder --help` stays fast)."""

UPDATE, CANCELLATION = "update", "cancellation"
NOTICE_KINDS = (UPDATE, CANCELLATION)
