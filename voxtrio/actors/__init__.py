"""Actors: thin trio loops around codec objects, one module each.

Every actor is ``async def run(receive, send, *, ..., task_status)``: it owns its
channel ends, closes its output when its input ends, and reports readiness with
``task_status.started()``.
"""
