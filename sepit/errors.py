"""The one error a user sees: bad input of any kind (a flag, a config value, a file, a checkpoint, a plug-in
name). Its message starts with what is wrong and ends with the fix; `sepit` prints it as one line, never a
traceback (sepit/cli.py). Any other exception is a bug in this code, and keeps its traceback."""

from __future__ import annotations


class InputError(ValueError):
    """Bad input. The message names the place (a flag or config key, a file, line or record), the problem and
    the fix: `where: problem. fix`."""

    def __init__(self, where: str, problem: str, fix: str = ""):
        self.where, self.problem, self.fix = where, problem, fix
        super().__init__(f"{where}: {problem}" + (f". {fix}" if fix else ""))
