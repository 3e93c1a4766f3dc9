"""Conformance suites for casebridge plugins: run them from your plugin's tests.

A CRM plugin runs the CRM suite by subclassing it, and says how to reach its CRM in a
``crm_under_test`` fixture (the built-in Creatio plugin points it at its sandbox)::

    from casebridge.testing import CrmConformance

    class TestMyCrmConformance(CrmConformance):
        pass

    @pytest.fixture
    def crm_under_test(tmp_path):
        return CrmUnderTest(name="mycrm", settings={...}, probe=MyProbe)

A channel plugin does the same with :class:`ChannelConformance` and ``channel_under_test``.
Each suite builds a real bridge on a temporary folder (SQLite store, the plugin loaded by
its entry point, the plugin's services running), calls the plugin's hooks the way the core
does, and asks the probe — a small object the plugin's tests write — what reached the
outside world. What a suite checks is the contract in ``casebridge.hookspecs``: idempotent
keyed writes, lookups that find what was written, webhooks that refuse forgeries, and final
deliveries that never raise.
"""

from __future__ import annotations

from .channel import ChannelConformance, ChannelProbe, ChannelUnderTest
from .crm import CrmConformance, CrmProbe, CrmUnderTest
from .harness import Harness, LoopChannel, running_bridge

__all__ = [
    "ChannelConformance",
    "ChannelProbe",
    "ChannelUnderTest",
    "CrmConformance",
    "CrmProbe",
    "CrmUnderTest",
    "Harness",
    "LoopChannel",
    "running_bridge",
]
