// ZeroMemory: see docs/design.md.
