"""Agent integrations: each module plans the files one agent reads (see :mod:`cordon_setup.integrations`)."""
