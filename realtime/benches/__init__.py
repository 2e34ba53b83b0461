"""Benchmarks: bench (`realtime bench`: back-ends, sizes, batches, the full pipeline) and overlay_bench
(`python -m realtime.benches.overlay_bench`: the compositing cost of each overlay kind)."""
