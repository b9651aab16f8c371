"""evb-shell: the EVB:: Tcl commands, hooks, the interactive prompt and remote control."""

from shell.commands import Command, CommandError, CommandRegistry, build_registry, to_tcl

__all__ = ["Command", "CommandError", "CommandRegistry", "build_registry", "to_tcl"]
