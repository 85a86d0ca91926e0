"""The line between a user's mistake and a bug.

`UserError` is what the package raises on purpose when what it was given cannot work: a
path with nothing there, a recipe key that does not exist, an option refused, a file that
is not what it claims. Its message says what to do. The `alexnet` command prints it as one
line and exits with status 2 (`--debug` adds the traceback). Every other exception, a
ValueError that numpy, json or torch raise included, is a bug: the command shows its
traceback. `UserError` is a ValueError, so code that catches ValueError around this
package's calls keeps working.
"""

from __future__ import annotations


class UserError(ValueError):
    """A mistake in what the package was given; the message says what was expected."""
