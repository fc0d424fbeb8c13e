"""The benchmark suite of issue 5: ingest throughput, rule-trigger overhead, query latency, memory and a soak,
each headline figure with a baseline measured in the same run. See docs/performance.md."""
