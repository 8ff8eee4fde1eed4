"""``crm-scorer`` and its subcommands: parse arguments, build the settings once, hand values to the parts."""
