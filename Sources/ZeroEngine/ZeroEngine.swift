// ZeroEngine: see docs/design.md.
