"""Rule development tools: `sentinel rules lint` (`lint.py`) and the fixture runner behind `sentinel rules test`
(`fixtures.py`).

A tool layer above the engine: it may import the engine, the compliance frameworks (control ids) and the
traffic analyser (capture fixtures); none of those imports it.
"""
