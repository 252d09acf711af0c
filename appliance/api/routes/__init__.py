"""One blueprint factory per API area; each takes the engine and stays thin: parse, call, serialise."""
