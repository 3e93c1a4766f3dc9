"""The Creatio sandbox: a local server that speaks the part of Creatio casebridge uses
(AuthService, OAuth client credentials, OData 4 with ``$batch``, FileApiService) and plays the
business processes that post agents' replies to a webhook. Integrators try casebridge and
build their processes against it; the Creatio plugin's tests run against it.

Quick start: ``casebridge sandbox creatio --port 5000``, then log in as Supervisor /
Supervisor and open ``http://127.0.0.1:5000/sandbox/cases``.
"""

from .app import Sandbox, create_sandbox_app
from .settings import FaultSettings, SandboxSettings, SandboxUser

__all__ = ["FaultSettings", "Sandbox", "SandboxSettings", "SandboxUser", "create_sandbox_app"]
