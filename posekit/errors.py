"""The one exception posekit raises for a user's mistake (bad file, field, shape or value).

Its message names the file/field at fault and is printed as one line by the command line, which
then exits with status 2. Anything else escaping posekit is a bug.
"""


class PosekitError(ValueError):
    """Bad input: the message says which file, field or value, and why."""
