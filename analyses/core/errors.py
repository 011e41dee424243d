"""The errors a user can cause, each carrying a message fit to show as it is."""


class UserError(ValueError):
    """Bad input from a user: the CLI prints it on one line and exits 2, the app shows it."""


class SpecError(UserError):
    """An analysis spec (link, JSON or arguments) that names a bad field or value."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


class ModelError(UserError):
    """A model reference that cannot be resolved or loaded."""
