"""IDLE notices a change the server sent in the same packet as its "+ idling": imaplib reads
both lines into its buffer, so polling the socket alone would wait for data that came."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from casebridge.plugin import Secret
from casebridge_email.imap import ImapConnection
from casebridge_email.settings import MailboxSettings


def scripted_server(sock: socket.socket) -> None:
    """Just enough IMAP for a login and one IDLE; the change rides with the continuation."""
    conn, _ = sock.accept()
    with conn, conn.makefile("rb") as lines:
        conn.sendall(b"* OK [CAPABILITY IMAP4rev1 IDLE] ready\r\n")
        for raw in lines:
            tag, _, command = raw.decode().strip().partition(" ")
            verb = command.split(" ")[0].upper()
            if verb == "CAPABILITY":
                conn.sendall(f"* CAPABILITY IMAP4rev1 IDLE\r\n{tag} OK done\r\n".encode())
            elif verb == "LOGIN":
                conn.sendall(f"{tag} OK logged in\r\n".encode())
            elif verb == "IDLE":
                idle_tag = tag
                conn.sendall(b"+ idling\r\n* 3 EXISTS\r\n")  # one packet
            elif tag.upper() == "DONE":
                conn.sendall(f"{idle_tag} OK idle done\r\n".encode())
            elif verb == "LOGOUT":
                conn.sendall(f"* BYE\r\n{tag} OK bye\r\n".encode())
                return


def test_a_change_sent_with_the_idle_continuation_is_seen_at_once() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    server = threading.Thread(target=scripted_server, args=(listener,), daemon=True)
    server.start()
    settings = MailboxSettings(host="127.0.0.1", port=listener.getsockname()[1], tls="none",
                               username="bridge", password=Secret("pw"), timeout=5)
    connection = ImapConnection(settings, Path("."))
    connection.open()
    try:
        connection.idle_start()
        # Without reading what imaplib buffered, this waits the full 3 s and says False.
        assert connection.idle_wait(3.0) is True
        connection.idle_done()
    finally:
        connection.close()
        listener.close()
    server.join(timeout=5)
