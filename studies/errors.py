"""The one root exception of the studies.

StudyError
 +-- SpecError      a study asked for rows, partitions or rounds the study does not have
 +-- ReportError    a report cannot be read, is not of a known kind, or runs cannot be compared
 +-- BenchError     a path of a benchmark failed; the message says which and why
"""


class StudyError(Exception):
    """Base of every error a study raises for a user to read."""


class SpecError(StudyError):
    pass


class ReportError(StudyError):
    pass


class BenchError(StudyError):
    pass
