"""casebridge: hand AI support conversations to a CRM as cases, and carry replies back.

Write a plugin with :data:`hookimpl` (see ``docs/plugins.md``)::

    from casebridge import hookimpl

    class MyCrm:
        @hookimpl
        async def create_case(self, request): ...
"""

from .hookspecs import hookimpl

__all__ = ["hookimpl"]
__version__ = "0.1.0"
