"""The one error type of the evaluation package: bad input a user can fix."""


class EvaluationError(ValueError):
    """A folder, file or option that the evaluation cannot work with; the message says which."""
