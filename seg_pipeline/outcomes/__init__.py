"""Stage 8, outcomes: how earlier scores turned out and what the retention contacts achieved (pure logic)."""
