"""The Faust wiring: the app, its topics, and one small module per agent. Wiring only: the
agents decode, call the domain in ``workers``, and hand results to adapters."""
