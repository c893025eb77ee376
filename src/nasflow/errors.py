"""The one exception type that reaches users as a single line instead of a traceback."""


class NasflowError(Exception):
    """A problem with the user's input: a bad name, value, path or file.

    The message must say which value is wrong and what is allowed. Entry points print it
    as one line and exit with status 2; everything else is a bug and keeps its traceback.
    """
