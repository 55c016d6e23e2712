"""The sans-IO core of cordon-proxy: HTTP/1.1 framing, routing, injection and the per-connection session.

Rule: nothing in this package performs I/O or reads the clock. No ``asyncio``, ``socket``, ``ssl``, ``time``
or ``os`` imports (``tests/test_core_sans_io.py`` enforces it). The asyncio edge (``cordon_proxy.server``)
feeds :mod:`~cordon_proxy.core.events` into :class:`~cordon_proxy.core.session.Session` and carries out the
:mod:`~cordon_proxy.core.commands` it returns.
"""
