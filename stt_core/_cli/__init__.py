"""``stt-core``'s commands (``commands``), ``listen`` and the terminal's output (``terminal``)."""
