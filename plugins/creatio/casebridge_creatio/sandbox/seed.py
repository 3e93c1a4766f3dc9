"""The lookup rows a fresh sandbox starts with, under Creatio's own GUIDs.

GUIDs marked "seen" come from shared/CREATIO.md or public Creatio code; those marked "chosen"
were not found anywhere and are the sandbox's own (clients should resolve them by ``Name``).
"""

from __future__ import annotations

from typing import Any

from .settings import SUPERVISOR_CONTACT_ID

# CaseStatus (seen)
STATUS_NEW = "ae5f2f10-f46b-1410-fd9a-0050ba5d6c38"
STATUS_IN_PROGRESS = "7e9f1204-f46b-1410-fb9a-0050ba5d6c38"
STATUS_WAITING = "3859c6e7-cbcb-486b-ba53-77808fe6e593"
STATUS_RESOLVED = "ae7f411e-f46b-1410-009b-0050ba5d6c38"
STATUS_CLOSED = "3e7f420c-f46b-1410-fc9a-0050ba5d6c38"
STATUS_CANCELED = "6e5f4218-f46b-1410-fe9a-0050ba5d6c38"
STATUS_REOPENED = "f063ebbe-fdc6-4982-8431-d8cfa52fedcf"
# CaseOrigin: Email, Portal (seen); SMS, Phone, Chat (chosen)
ORIGIN_EMAIL = "7f9e1f1e-f46b-1410-3492-0050ba5d6c38"
ORIGIN_PORTAL = "debf4124-f46b-1410-3592-0050ba5d6c38"
ORIGIN_SMS = "5c1b7d3e-2a4f-4b8e-9c61-0d3f5e7a9b21"
ORIGIN_PHONE = "8e2c6a4b-1d3f-4e5a-8b7c-9f0a1b2c3d40"
ORIGIN_CHAT = "a3d5f7b9-c1e2-4f3a-9b8c-7d6e5f4a3b2c"
# CasePriority: Medium (seen); Low, High, Critical (chosen)
PRIORITY_MEDIUM = "d9bd322c-f46b-1410-ee8c-0050ba5d6c38"
PRIORITY_LOW = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
PRIORITY_HIGH = "2b3c4d5e-6f7a-4b8c-9d0e-1f2a3b4c5d6e"
PRIORITY_CRITICAL = "3c4d5e6f-7a8b-4c9d-0e1f-2a3b4c5d6e7f"
# CaseCategory (chosen)
CATEGORY_INCIDENT = "4d5e6f7a-8b9c-4d0e-9f2a-3b4c5d6e7f80"
CATEGORY_SERVICE_REQUEST = "5e6f7a8b-9c0d-4e1f-8a3b-4c5d6e7f8091"
# ActivityType (seen)
ACTIVITY_TYPE_EMAIL = "e2831dec-cfc0-df11-b00f-001d60e938c6"
ACTIVITY_TYPE_TASK = "fbe0acdc-cfc0-df11-b00f-001d60e938c6"
ACTIVITY_TYPE_CALL = "e1831dec-cfc0-df11-b00f-001d60e938c6"
# ActivityCategory (seen)
ACTIVITY_CATEGORY_EMAIL = "8038a396-7825-e011-8165-00155d043204"
ACTIVITY_CATEGORY_TODO = "f51c4643-58e6-df11-971b-001d60e938c6"
# ActivityStatus: Not started, In progress, Completed (seen); Canceled (chosen)
ACTIVITY_STATUS_NOT_STARTED = "384d4b84-58e6-df11-971b-001d60e938c6"
ACTIVITY_STATUS_IN_PROGRESS = "394d4b84-58e6-df11-971b-001d60e938c6"
ACTIVITY_STATUS_COMPLETED = "4bdbb88f-58e6-df11-971b-001d60e938c6"
ACTIVITY_STATUS_CANCELED = "6f8a9b0c-1d2e-4f3a-8b5c-6d7e8f9a0b1c"
# ActivityPriority: Medium (seen); Low, High (chosen)
ACTIVITY_PRIORITY_MEDIUM = "ab96fa02-7fe6-df11-971b-001d60e938c6"
ACTIVITY_PRIORITY_LOW = "7a8b9c0d-1e2f-4a3b-9c5d-6e7f8a9b0c1d"
ACTIVITY_PRIORITY_HIGH = "8b9c0d1e-2f3a-4b4c-8d6e-7f8a9b0c1d2e"
# EmailType, the lookup behind Activity.MessageType (seen, "referenceSchemaName": "EmailType")
MESSAGE_INCOMING = "7f9d1f86-f36b-1410-068c-20cf30b39373"
MESSAGE_OUTGOING = "7f6d3f94-f36b-1410-068c-20cf30b39373"
# CommunicationType (seen)
COMMUNICATION_EMAIL = "ee1c85c3-cfcb-df11-9b2a-001d60e938c6"
COMMUNICATION_MOBILE = "d4a2dc80-30ca-df11-9b2a-001d60e938c6"
COMMUNICATION_PHONE = "9c0d1e2f-3a4b-4c5d-8e7f-8a9b0c1d2e3f"
# FileType: File (seen); Link (chosen)
FILE_TYPE_FILE = "529bc2f8-0ee0-df11-971b-001d60e938c6"
FILE_TYPE_LINK = "0d1e2f3a-4b5c-4d6e-9f8a-9b0c1d2e3f40"
# Contacts and groups: Supervisor's contact (seen); the rest (chosen)
SUPERVISOR_CONTACT = SUPERVISOR_CONTACT_ID
AGENT_CONTACT = "1e2f3a4b-5c6d-4e7f-8a9b-0c1d2e3f4a5b"
GROUP_SUPPORT_LINE_1 = "2f3a4b5c-6d7e-4f8a-9b0c-1d2e3f4a5b6c"
GROUP_SUPPORT_LINE_2 = "3a4b5c6d-7e8f-4a9b-8c1d-2e3f4a5b6c7d"
SYSADMIN_SUPERVISOR = "7f3b869f-34f3-4f20-ab4d-7480a5fdf647"
SYSADMIN_AGENT = "4b5c6d7e-8f9a-4b0c-9d2e-3f4a5b6c7d8e"

FINAL_STATUSES = frozenset({STATUS_CLOSED, STATUS_CANCELED})


def _named(pairs: list[tuple[str, str]], **extra: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"Id": gid, "Name": name, **extra.get(name, {})} for gid, name in pairs]


def _status(gid: str, name: str, *, final: bool = False, resolved: bool = False,
            paused: bool = False) -> dict[str, Any]:
    return {"Id": gid, "Name": name, "IsFinal": final, "IsResolved": resolved,
            "IsPaused": paused}


def seed_rows() -> dict[str, list[dict[str, Any]]]:
    """The rows of a fresh sandbox, by entity. Columns not given take their defaults."""
    return {
        "CaseStatus": [
            _status(STATUS_NEW, "New"),
            _status(STATUS_IN_PROGRESS, "In progress"),
            _status(STATUS_WAITING, "Waiting for response", paused=True),
            _status(STATUS_RESOLVED, "Resolved", resolved=True),
            _status(STATUS_CLOSED, "Closed", final=True, resolved=True),
            _status(STATUS_CANCELED, "Canceled", final=True),
            _status(STATUS_REOPENED, "Reopened"),
        ],
        "CaseOrigin": _named([(ORIGIN_EMAIL, "Email"), (ORIGIN_PORTAL, "Portal"),
                              (ORIGIN_SMS, "SMS"), (ORIGIN_PHONE, "Call"),
                              (ORIGIN_CHAT, "Chat")]),
        "CasePriority": _named([(PRIORITY_LOW, "Low"), (PRIORITY_MEDIUM, "Medium"),
                                (PRIORITY_HIGH, "High"), (PRIORITY_CRITICAL, "Critical")]),
        "CaseCategory": _named([(CATEGORY_INCIDENT, "Incident"),
                                (CATEGORY_SERVICE_REQUEST, "Service request")]),
        "ActivityType": _named([(ACTIVITY_TYPE_EMAIL, "Email"), (ACTIVITY_TYPE_TASK, "Task"),
                                (ACTIVITY_TYPE_CALL, "Call")]),
        "ActivityCategory": _named([(ACTIVITY_CATEGORY_EMAIL, "Email"),
                                    (ACTIVITY_CATEGORY_TODO, "To do")]),
        "ActivityStatus": _named(
            [(ACTIVITY_STATUS_NOT_STARTED, "Not started"),
             (ACTIVITY_STATUS_IN_PROGRESS, "In progress"),
             (ACTIVITY_STATUS_COMPLETED, "Completed"), (ACTIVITY_STATUS_CANCELED, "Canceled")],
            Completed={"Finish": True}, Canceled={"Finish": True},
        ),
        "ActivityPriority": _named([(ACTIVITY_PRIORITY_LOW, "Low"),
                                    (ACTIVITY_PRIORITY_MEDIUM, "Medium"),
                                    (ACTIVITY_PRIORITY_HIGH, "High")]),
        "EmailType": _named([(MESSAGE_INCOMING, "Incoming"), (MESSAGE_OUTGOING, "Outgoing")]),
        "CommunicationType": _named([(COMMUNICATION_EMAIL, "Email"),
                                     (COMMUNICATION_MOBILE, "Mobile phone"),
                                     (COMMUNICATION_PHONE, "Business phone")]),
        "FileType": _named([(FILE_TYPE_FILE, "File"), (FILE_TYPE_LINK, "Link")]),
        "Contact": [
            {"Id": SUPERVISOR_CONTACT, "Name": "Supervisor", "Email": "supervisor@sandbox.test"},
            {"Id": AGENT_CONTACT, "Name": "Alex Agent", "Email": "alex.agent@sandbox.test",
             "JobTitle": "Support agent"},
        ],
        "ContactCommunication": [
            {"Id": "5c6d7e8f-9a0b-4c1d-8e3f-4a5b6c7d8e9f", "ContactId": SUPERVISOR_CONTACT,
             "CommunicationTypeId": COMMUNICATION_EMAIL, "Number": "supervisor@sandbox.test",
             "Primary": True},
        ],
        "SysAdminUnit": [
            {"Id": GROUP_SUPPORT_LINE_1, "Name": "Support line 1", "SysAdminUnitTypeValue": 1,
             "Active": True},
            {"Id": GROUP_SUPPORT_LINE_2, "Name": "Support line 2", "SysAdminUnitTypeValue": 1,
             "Active": True},
            {"Id": SYSADMIN_SUPERVISOR, "Name": "Supervisor", "ContactId": SUPERVISOR_CONTACT,
             "SysAdminUnitTypeValue": 4, "Active": True},
            {"Id": SYSADMIN_AGENT, "Name": "Alex Agent", "ContactId": AGENT_CONTACT,
             "SysAdminUnitTypeValue": 4, "Active": True},
        ],
    }
