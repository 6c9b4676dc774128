"""The functions behind `sepit` subcommands: typed arguments, callable from tests without a subprocess."""
