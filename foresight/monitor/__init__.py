"""The always-on line monitor: sources, pipeline, PLC and store as asyncio tasks."""
