"""One module per `voicenode` subcommand (see cli._COMMANDS)."""
