"""Model-side tvm-qnn subcommands (filled in below)."""
