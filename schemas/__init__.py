"""What flows on freshet's topics: versioned contracts, pure, no I/O.

Each contract is a pydantic model here and a JSON Schema file in ``schemas/json/`` for producers
and consumers in other languages (``freshet schemas`` regenerates them; a unit test keeps them in
step).
"""
