"""The one exception type tfmtl raises for bad user input."""


class InputError(ValueError):
    """Bad input from the user: a column, argument or file that is not what was expected.

    The message is one line that names the column or argument and says what was
    expected, so the command-line tool can print it as it is.

    Example:

    ```python
    try:
        raise InputError("column 'age': expected numbers, found 'forty'")
    except ValueError as error:
        print(error)
    ```
    """
