"""What the pytest suites share (Tests/Integration, Tests/Browser, Tests/EndToEnd, Examples)
and the benchmarks reuse: importable as `support` with Tests/ on PYTHONPATH, as the Makefile
sets it.

- harness: the embedded Kafka cluster, the supervisor, orders and their expected grids,
  processes and their cgroups;
- server: `aerogrid serve`, an HTTP client of its API, bundles, and the platform (Kafka and
  a server) a test module runs on;
- stream: a client of the stream protocol; stream_load: load on it from processes of their own;
- prerequisites: what the suites need of the machine;
- plugin: the fixtures, loaded with `-p support.plugin`.
"""
