"""The delivery core: which outbox rows go to the broker, when, and when they may be deleted.

:class:`DeliveryWindow` is a state machine with no I/O, no threads and no clock of its own. The
publisher feeds it what happened (rows stored, their commit settled, the link up or down, a row
handed to the link under a message id, a PUBACK, rows read back from the outbox, the time) and
carries out what it asks for:

* :meth:`DeliveryWindow.sends`: the rows to hand to the link now, in order; the publisher
  answers each with :meth:`~DeliveryWindow.sent` (the link took it, under this message id),
  :meth:`~DeliveryWindow.unsendable` (it never can be sent) or, for those the link did not take,
  :meth:`~DeliveryWindow.unsent`;
* :meth:`DeliveryWindow.read_request`: read more rows from the outbox, after this row;
  answered by :meth:`~DeliveryWindow.rows_read`;
* :meth:`DeliveryWindow.deletes_due`: acknowledged rows to delete from the outbox now;
* :meth:`DeliveryWindow.take_refusals`: rows the broker (or the link) refused, to log and drop.

What it guarantees (``tests/agent/test_delivery_window.py`` drives it through any interleaving
with a hypothesis state machine):

* a row is deleted only after its PUBACK, and, for a row sent while its commit still ran, only
  once that commit is known to have succeeded;
* rows are handed to the link in ``row_id`` order, never more than the in-flight bound (ours,
  or the broker's *Receive Maximum* if lower) waiting for PUBACK;
* after the link went down, nothing new is sent until the link's own resends of what was in
  flight (paho resends them after the reconnect, with DUP) are acknowledged;
* every stored row is sent until acknowledged: a rolled-back commit moves the cursor back so
  that whatever is stored next under those ids is sent in turn.

See docs/outbox.md for why sending before the commit is no less durable, and
:mod:`agent.mqtt.publisher` for the threads that feed it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from agent.store.outbox import OutboxEntry

# Staged rows that found no room in flight wait in memory, up to this many payload bytes (a
# few busy batches), and are sent from there as PUBACKs free room; beyond it they are read
# back from the outbox in turn.
READY_MAX_BYTES = 1 << 20
READ_BACK_ROWS = 256  # rows read back per query (into memory, bounded by READY_MAX_BYTES too)
# Acknowledged rows are deleted in one transaction once this many are waiting or the oldest
# has waited this long (or at stop): on a busy link, one delete transaction per pump turn was
# a tenth of the agent's CPU. A kill in between costs duplicates (same ids), never a readout.
DELETE_BATCH_ROWS = 64
DELETE_DELAY_S = 0.02
IDLE_WAKE_S = 1.0  # an idle publisher looks again this often (retries failed reads/deletes)
FIRST_FAILURE_CODE = 0x80  # MQTT 5 reason codes from 0x80 on are refusals


@dataclass(frozen=True, slots=True)
class Refusal:
    """A message the broker (or the link) refused. ``entry`` is None for a status message."""

    entry: OutboxEntry | None
    reason: str
    code: int | None  # the MQTT 5 reason code; None when the link refused it before sending


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """Read up to ``limit`` rows after ``after_row`` and give them to :meth:`rows_read`."""

    after_row: int
    limit: int
    generation: int  # the cursor's generation when asked: a read that overlapped a move is stale
    news: int  # the window's news of unread rows when asked


class DeliveryWindow:
    """The delivery state of one publisher (see the module docstring). Not thread-safe: the
    publisher calls it under one lock."""

    def __init__(self, max_inflight: int, *, ready_max_bytes: int = READY_MAX_BYTES,
                 read_back_rows: int = READ_BACK_ROWS,
                 delete_batch_rows: int = DELETE_BATCH_ROWS,
                 delete_delay_s: float = DELETE_DELAY_S) -> None:
        if max_inflight < 1:
            raise ValueError("max_inflight must be at least 1")
        self.max_inflight = max_inflight
        self.limit = max_inflight  # lowered to the broker's Receive Maximum on link up
        self.link_is_up = False
        self._ready_max_bytes = ready_max_bytes
        self._read_back_rows = read_back_rows
        self._delete_batch_rows = delete_batch_rows
        self._delete_delay_s = delete_delay_s

        self.inflight: dict[int, OutboxEntry] = {}  # message id -> row, waiting for PUBACK
        self.status_mids: set[int] = set()  # status and discovery messages in flight
        self.cursor = 0  # the last row handed to the link
        self.generation = 0  # changes with every move of the cursor
        # Message ids in flight when the link went down: the link resends them after the
        # reconnect, and no new row may overtake them.
        self.carried_over: set[int] = set()
        # False once a read of the outbox came back short and nobody has said "new rows"
        # since: turns woken only by PUBACKs then skip the query.
        self.rows_unread = True
        self._news = 0  # times rows_unread was set: a read that overlapped one is not enough
        # Rows not yet handed to the link for want of room in flight, in order: the next ones
        # after the cursor (staged, or read back from the outbox).
        self.ready: deque[OutboxEntry] = deque()
        self.ready_bytes = 0
        self._ready_unsettled: set[int] = set()  # of those, rows whose commit is not known yet
        # Rows sent before their commit was known.
        self._uncommitted: dict[int, OutboxEntry] = {}
        # Rows sent before their commit was known and already answered: (row, None when
        # acknowledged, else the refusal). Counted and deleted once the commit is known;
        # forgotten if it rolls back (such a row was never read).
        self._answered_uncommitted: list[tuple[OutboxEntry, Refusal | None]] = []
        self.to_delete: list[int] = []  # acknowledged rows not yet deleted from the outbox
        self._to_delete_since: float | None = None  # when the oldest of them came
        self._refusals: list[Refusal] = []
        # When not None, the ``created_at`` of every acknowledged row (for a delivery-time
        # histogram), taken with take_delivered().
        self.delivered: list[float] | None = None

        self.published = 0  # rows handed to the link (the link's own resends not counted)
        self.sent_before_commit = 0  # of those, handed over while their commit still ran
        self.acknowledged = 0  # rows the broker acknowledged (deleted, or about to be)
        self.refused = 0  # rows the broker (or the link) refused, dropped

    # -- events ---------------------------------------------------------------------------

    def link_up(self, receive_maximum: int | None) -> None:
        """The broker accepted the connection (with its Receive Maximum, MQTT 5)."""
        self.link_is_up = True
        self._unread()
        self.limit = min(self.max_inflight, receive_maximum or self.max_inflight)

    def link_down(self) -> None:
        """The connection is gone; what was in flight is resent by the link after the next
        connect, before anything new."""
        self.link_is_up = False
        self.carried_over = set(self.inflight)

    def poked(self) -> None:
        """Rows may have been stored that this window has not heard of: read again."""
        self._unread()

    def staged(self, entries: Sequence[OutboxEntry]) -> None:
        """Rows inserted, their commit still running: if they come next (right after the
        cursor and the rows already waiting in memory), keep them in memory to send at once.
        Otherwise older rows wait in the outbox, and these are read back after them."""
        if not self.link_is_up:
            return  # read back after the reconnect: an outage may evict or expire rows
        if not entries or entries[0].row_id != self._last_known_row() + 1:
            return
        self._keep_ready(entries, settled=False)  # the rest is read back in turn (settled)

    def settled(self, first_row: int, last_row: int, committed: bool) -> None:
        """The commit of rows ``first_row..last_row`` succeeded or was rolled back."""
        rows = range(first_row, last_row + 1)
        if committed:
            self._ready_unsettled.difference_update(rows)
            if last_row > self._last_known_row():
                self._unread()  # committed rows neither sent nor in memory
        else:
            self._forget_ready_from(first_row)
        if not any(row in self._uncommitted for row in rows):
            return  # none of them was sent early
        for row in rows:
            self._uncommitted.pop(row, None)
        answered = [(entry, refusal) for entry, refusal in self._answered_uncommitted
                    if entry.row_id in rows]
        self._answered_uncommitted = [(entry, refusal) for entry, refusal
                                      in self._answered_uncommitted if entry.row_id not in rows]
        if committed:
            for entry, refusal in answered:
                self._answered(entry, refusal)
            return
        # Rolled back: those rows do not exist, and their ids may come back with other
        # messages. Forget them and send whatever is stored after the last committed row.
        for mid, entry in list(self.inflight.items()):
            if entry.row_id in rows:
                del self.inflight[mid]
                self.carried_over.discard(mid)
        self._move_cursor(min(self.cursor, first_row - 1))
        self._unread()

    def status_sent(self, mid: int) -> None:
        """A status (or discovery) message was handed to the link: it takes room in flight."""
        self.status_mids.add(mid)

    def acked(self, mid: int, reason_code: int, reason: str) -> None:
        """The broker answered message ``mid`` (a PUBACK; codes from 0x80 on refuse it)."""
        if mid in self.status_mids:
            self.status_mids.discard(mid)
            if reason_code >= FIRST_FAILURE_CODE:
                self._refusals.append(Refusal(None, reason, reason_code))
            return
        self.carried_over.discard(mid)
        entry = self.inflight.pop(mid, None)
        if entry is None:
            return  # a duplicate, or a row forgotten after its commit rolled back
        refusal = None if reason_code < FIRST_FAILURE_CODE else Refusal(entry, reason,
                                                                        reason_code)
        if entry.row_id in self._uncommitted:
            self._answered_uncommitted.append((entry, refusal))
        else:
            self._answered(entry, refusal)

    # -- sending --------------------------------------------------------------------------

    def room(self) -> int:
        """How many more messages may be in flight now."""
        return self.limit - len(self.inflight) - len(self.status_mids)

    def sends(self) -> list[OutboxEntry]:
        """The rows to hand to the link now, in order: the first ones waiting in memory, as
        many as fit in flight. Answer each, in order, with :meth:`sent` or
        :meth:`unsendable`, and the rest with :meth:`unsent`."""
        ready = self.ready
        if not ready or not self.link_is_up or self.carried_over:
            return []  # the link is down, or still resends what was in flight: keep order
        room = self.room()
        if room <= 0:
            return []
        taken = [ready[i] for i in range(min(room, len(ready)))]
        for entry in taken:
            if entry.row_id in self._ready_unsettled:
                self._uncommitted[entry.row_id] = entry
        return taken

    def sent(self, entry: OutboxEntry, mid: int) -> None:
        """The link took ``entry`` (the first row of :meth:`sends` not yet answered) as
        message ``mid``; it sends it, and resends it after a reconnect, until its PUBACK."""
        self._take_first(entry)
        self.inflight[mid] = entry
        self.published += 1

    def unsendable(self, entry: OutboxEntry, reason: str) -> None:
        """The link can never send ``entry`` (an invalid topic): drop it as refused."""
        self._take_first(entry)
        refusal = Refusal(entry, reason, None)
        if entry.row_id in self._uncommitted:
            self._answered_uncommitted.append((entry, refusal))
        else:
            self._answered(entry, refusal)

    def unsent(self, entries: Sequence[OutboxEntry]) -> None:
        """Rows of :meth:`sends` the link did not take (its queue is full): they stay in
        memory and come again."""
        for entry in entries:
            self._uncommitted.pop(entry.row_id, None)

    # -- reading back ---------------------------------------------------------------------

    def read_request(self) -> ReadRequest | None:
        """Rows to read from the outbox now, or None: only when nothing waits in memory, the
        link's resends are through, there is room, and rows may be waiting unread."""
        if (self.ready or self.carried_over or not self.link_is_up or self.room() <= 0
                or not self.rows_unread):
            return None
        return ReadRequest(self.cursor, self._read_back_rows, self.generation, self._news)

    def rows_read(self, request: ReadRequest, rows: Sequence[OutboxEntry], *,
                  rolled_back: bool = False) -> bool:
        """Rows the outbox returned for ``request``. Returns False, and keeps none, when the
        read is stale: the cursor moved meanwhile (rows staged and sent), the link went down,
        or a commit was rolled back meanwhile (``rolled_back``: rows stored since may reuse
        its ids while its rows still count as sent). They are read again next time."""
        if (self.generation != request.generation or self.carried_over or not self.link_is_up
                or self.ready or rolled_back):
            self._unread()
            return False
        all_kept = self._keep_ready(rows, settled=True)
        # More may wait: a full batch, rows that did not fit in memory, or news of rows
        # stored (or a link that came up) while this read ran.
        self.rows_unread = (len(rows) >= request.limit or not all_kept
                            or self._news != request.news)
        return True

    # -- deleting -------------------------------------------------------------------------

    def deletes_due(self, now: float, *, stopping: bool = False) -> list[int]:
        """The acknowledged rows to delete now: a batch of ``delete_batch_rows``, or those
        that waited ``delete_delay_s``, or all of them at stop. They count as handed over:
        if the delete fails, give them back with :meth:`delete_failed`."""
        if not self.to_delete:
            self._to_delete_since = None
            return []
        if self._to_delete_since is None:
            self._to_delete_since = now
        if (stopping or len(self.to_delete) >= self._delete_batch_rows
                or now - self._to_delete_since >= self._delete_delay_s):
            done, self.to_delete = self.to_delete, []
            self._to_delete_since = None
            return done
        return []

    def delete_failed(self, rows: Sequence[int], now: float) -> None:
        """The outbox could not delete ``rows``: they are due again."""
        self.to_delete[:0] = rows
        if self._to_delete_since is None:
            self._to_delete_since = now

    def idle_wait(self, now: float) -> float:
        """How long an idle publisher may sleep: until acknowledged rows are due for deletion."""
        since = self._to_delete_since
        if since is None:
            return IDLE_WAKE_S
        return max(0.0, min(IDLE_WAKE_S, since + self._delete_delay_s - now))

    def take_refusals(self) -> list[Refusal]:
        """The refusals since the last call (to log; they are already counted and dropped)."""
        refusals, self._refusals = self._refusals, []
        return refusals

    def take_delivered(self) -> list[float]:
        """The ``created_at`` of rows acknowledged since the last call (see ``delivered``)."""
        if not self.delivered:
            return []
        delivered, self.delivered = self.delivered, []
        return delivered

    # -- internals ------------------------------------------------------------------------

    def _answered(self, entry: OutboxEntry, refusal: Refusal | None) -> None:
        self.to_delete.append(entry.row_id)
        if refusal is None:
            self.acknowledged += 1
            if self.delivered is not None:
                self.delivered.append(entry.created_at)
        else:
            self.refused += 1
            self._refusals.append(refusal)

    def _take_first(self, entry: OutboxEntry) -> None:
        ready = self.ready
        if not ready or ready[0] is not entry:
            raise ValueError(f"row {entry.row_id} is not the next one to send")
        ready.popleft()
        self.ready_bytes -= len(entry.payload)
        if entry.row_id in self._ready_unsettled:
            self._ready_unsettled.discard(entry.row_id)
            self.sent_before_commit += 1
        self._move_cursor(entry.row_id)

    def _keep_ready(self, entries: Sequence[OutboxEntry], *, settled: bool) -> bool:
        """Queue rows in memory, in order, while the memory bound allows; False when some
        did not fit (they are read back from the outbox later)."""
        for entry in entries:
            if self.ready_bytes >= self._ready_max_bytes:
                return False
            self.ready.append(entry)
            self.ready_bytes += len(entry.payload)
            if not settled:
                self._ready_unsettled.add(entry.row_id)
        return True

    def _forget_ready_from(self, row_id: int) -> None:
        """Drop the rows waiting in memory from ``row_id`` on (their commit rolled back)."""
        ready = self.ready
        while ready and ready[-1].row_id >= row_id:
            entry = ready.pop()
            self.ready_bytes -= len(entry.payload)
            self._ready_unsettled.discard(entry.row_id)
            self._unread()  # committed rows may come back under those ids

    def _last_known_row(self) -> int:
        """The last row sent or waiting in memory: a staged batch that starts right after
        it leaves nothing unsent in between (row ids only grow)."""
        return self.ready[-1].row_id if self.ready else self.cursor

    def _unread(self) -> None:
        self.rows_unread = True
        self._news += 1

    def _move_cursor(self, row_id: int) -> None:
        self.cursor = row_id
        self.generation += 1
