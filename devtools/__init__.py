"""Development tools shared by the tests and the benchmarks; not part of the installed package.

- `fabricate`: datasets and run tables filled from a seeded generator, with the engine's
  invariants (no model involved), for testing and timing the analysis code and dashboards;
- `headless`: headless Chromium driving and PNG decoding, for the dashboard browser checks.
"""
