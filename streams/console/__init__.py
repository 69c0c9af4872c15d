"""The review console (issue 17): the plants' monthly evidence deposit and the municipal-provincial-national
review, pages and ``/api/v1``, on the monthly archive. Needs the ``console`` extra (argon2-cffi, jinja2, aiohttp).
See docs/console.md."""
