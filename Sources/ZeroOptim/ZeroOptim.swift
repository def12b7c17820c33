// ZeroOptim: see docs/design.md.
