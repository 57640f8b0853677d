"""Measuring the pipeline: benchmarks, LFW and open-set evaluation, synthetic galleries."""
