"""One simulation run: the day loop over all customers (or a subset of them).

Each day, in clock order: arrivals, churn, the marketing e-mail, the morning session,
deliveries, support contacts, the evening session and advocacy. Removed frictions never
occur, but their occurrence draws are still made, so every other draw is shared with the
factual run (common random numbers). Customers never interact, so a run over a subset
gives exactly the rows the full run gives them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from journey_ml.simulate.config import SimulationConfig
from journey_ml.simulate.draws import Draws, Purpose
from journey_ml.simulate.population import draw_population, persona_table, pick, repeat_rank
from journey_ml.simulate.vocab import (
    ADVOCACY_WINDOW,
    CH,
    DELIVERY_WINDOW,
    EMAIL_WINDOW,
    ENTRY_EVENT,
    ET,
    K_ADVOCACY,
    K_DELIVERY,
    K_EMAIL,
    K_S0,
    K_S1,
    K_SUPPORT,
    MAX_VIEWS,
    N_SLOTS,
    PLACEBO,
    PLACEBO_EVENT,
    SESSION_WINDOWS,
    SLOT_CART,
    SLOT_CHECKOUT,
    SLOT_ENTRY,
    SLOT_ERROR,
    SLOT_ORDER,
    SLOT_PLACEBO0,
    SLOT_PURCHASE,
    SLOT_RETRY,
    SLOT_VIEW0,
    SUPPORT_WINDOW,
)

__all__ = ["Chunk", "RunOutcome", "simulate_run"]

# Frictions whose effect lasts a window of days after the event.
_WINDOWED = ("checkout_error", "page_timeout", "support_wait", "late_delivery")


@dataclass
class Chunk:
    """Events emitted together (one activity of one day), as codes."""

    cust: np.ndarray
    sec: np.ndarray  # seconds since start
    etype: np.ndarray
    channel: np.ndarray
    skey: np.ndarray  # day * 8 + session kind
    revenue: np.ndarray | None = None
    wait: np.ndarray | None = None
    delay: np.ndarray | None = None
    irrelevant: np.ndarray | None = None


@dataclass
class RunOutcome:
    """Outcome of one simulation run (before assembling the frame)."""

    persona: np.ndarray
    arrival: np.ndarray
    revenue: np.ndarray
    purchases: np.ndarray
    churned: np.ndarray
    exited: np.ndarray
    friction: dict[str, np.ndarray]
    chunks: list[Chunk]


def simulate_run(
    config: SimulationConfig,
    removed: frozenset[str],
    collect: bool,
    subset: np.ndarray | None = None,
) -> RunOutcome:
    """Run the day loop over all customers, or over the global indices in ``subset``.

    ``collect=False`` skips event recording (for ground-truth re-runs).
    """
    gid = np.arange(config.customers, dtype=np.int64) if subset is None else np.asarray(subset, np.int64)
    return _DayLoop(config, removed, collect, gid).run()


def _in_window(lo_hi: tuple[int, int], u: np.ndarray) -> np.ndarray:
    return (lo_hi[0] + u * (lo_hi[1] - lo_hi[0])).astype(np.int64)


class _DayLoop:
    """The state of one run (per-customer arrays, pending deliveries) and its daily steps."""

    def __init__(self, config: SimulationConfig, removed: frozenset[str], collect: bool, gid: np.ndarray) -> None:
        n = len(gid)
        self.config = config
        self.fx = config.effects
        self.collect = collect
        self.gid = gid
        self.n = n
        self.rnd = Draws(config.seed, gid)
        self.pt = persona_table(config)
        self.pop = draw_population(config, self.rnd, self.pt, n)
        self.removed = removed
        # Dynamic state.
        self.alive = np.zeros(n, dtype=bool)
        self.churned = np.zeros(n, dtype=bool)
        self.exited = np.zeros(n, dtype=bool)
        self.subscribed = np.zeros(n, dtype=bool)
        self.sessions = np.zeros(n, dtype=np.int32)
        self.purchases = np.zeros(n, dtype=np.int32)
        self.revenue = np.zeros(n, dtype=np.float64)
        never = np.int32(-(10**6))
        # Last day each friction's effect window was (re)started.
        self.last = {name: np.full(n, never, dtype=np.int32) for name in _WINDOWED}
        fx = self.fx
        self.window = {
            "checkout_error": fx.short_window_days,
            "page_timeout": fx.short_window_days,
            "support_wait": fx.long_window_days,
            "late_delivery": fx.long_window_days,
        }
        self.churn_mult = {
            "checkout_error": fx.checkout_error_churn,
            "page_timeout": fx.page_timeout_churn,
            "support_wait": fx.support_wait_churn,
            "late_delivery": fx.late_delivery_churn,
        }
        self.occurrences = {name: np.zeros(n, dtype=np.int32) for name in config.frictions}
        # Pending deliveries and advocacy moments: parallel arrays, appended per day.
        self.dq_cust = np.zeros(0, np.int64)
        self.dq_day = np.zeros(0, np.int32)
        self.dq_delay = np.zeros(0, np.float64)
        self.aq_cust = np.zeros(0, np.int64)
        self.aq_day = np.zeros(0, np.int32)
        self.aq_late = np.zeros(0, bool)
        self.chunks: list[Chunk] = []

    def run(self) -> RunOutcome:
        for day in range(int(self.config.days)):
            self.alive[np.flatnonzero(self.pop.arrival == day)] = True
            self.churn(day)
            email_click = self.email(day)  # 05:00-06:30
            self.daily_sessions(day, K_S0, email_click)  # 07:00-13:30: first touch, e-mail clicks, habit
            support_due = self.deliveries(day)  # 14:00-15:30
            self.support(day, support_due)  # 16:00-16:40
            self.daily_sessions(day, K_S1, None)  # 17:30-23:30, after the day's deliveries and support
            self.advocacy(day)  # 23:30-23:50
        return RunOutcome(
            persona=self.pop.persona,
            arrival=self.pop.arrival,
            revenue=self.revenue,
            purchases=self.purchases,
            churned=self.churned,
            exited=self.exited,
            friction=self.occurrences,
            chunks=self.chunks,
        )

    # ------------------------------------------------------------------ helpers
    def emit(
        self, cust: np.ndarray, day: int, sec: np.ndarray, etype: np.ndarray | int, channel: np.ndarray | int,
        kind: int, **extra: np.ndarray,
    ) -> None:
        """Record events of local customers ``cust`` (skipped in ground-truth re-runs)."""
        if not self.collect or len(cust) == 0:
            return
        m = len(cust)
        self.chunks.append(
            Chunk(
                cust=self.gid[cust].astype(np.int32),
                sec=(day * 86400 + np.asarray(sec, dtype=np.int64)) * np.ones(m, np.int64),
                etype=np.broadcast_to(np.asarray(etype, np.int8), (m,)).copy(),
                channel=np.broadcast_to(np.asarray(channel, np.int8), (m,)).copy(),
                skey=np.full(m, day * 8 + kind, np.int32),
                **extra,
            )
        )

    def active(self, name: str, idx: np.ndarray, day: int) -> np.ndarray:
        """Whether the effect window of friction ``name`` is open for customers ``idx``."""
        return (day - self.last[name][idx]) <= self.window[name]

    def intent(self, idx: np.ndarray, day: int) -> np.ndarray:
        """Purchase-intent multiplier: repeat behaviour and recent service friction."""
        fx = self.fx
        mult = np.where(self.purchases[idx] > 0, self.pt["repeat"][self.pop.persona[idx]], 1.0)
        mult = mult * np.where(self.active("support_wait", idx, day), fx.support_wait_intent, 1.0)
        return mult * np.where(self.active("late_delivery", idx, day), fx.late_delivery_intent, 1.0)

    # ------------------------------------------------------------------ daily steps
    def churn(self, day: int) -> None:
        """Silent from today on; the hazard is raised inside friction windows."""
        pop = self.pop
        cand = np.flatnonzero(self.alive & (pop.arrival < day))
        if not len(cand):
            return
        p = pop.persona[cand]
        mult = np.ones(len(cand))
        for name, factor in self.churn_mult.items():
            mult += np.where(self.active(name, cand, day), (factor - 1.0) * pop.impatience[cand], 0.0)
        hazard = self.pt["churn"][p] * np.where(self.purchases[cand] > 0, 0.7, 1.0) * mult
        gone = cand[self.rnd.uniform(Purpose.CHURN, day, cand) < np.minimum(hazard, 0.9)]
        self.alive[gone] = False
        self.churned[gone] = True

    def email(self, day: int) -> np.ndarray:
        """The marketing e-mail: opens, irrelevant ones, unsubscribes; returns who clicked."""
        fx, pop, rnd = self.fx, self.pop, self.rnd
        email_click = np.zeros(self.n, dtype=bool)
        got = np.flatnonzero(self.alive & self.subscribed & ((day + pop.email_phase) % self.config.email_every_days == 0))
        if not len(got):
            return email_click
        p = pop.persona[got]
        opened = got[rnd.uniform(Purpose.EMAIL_OPEN, day, got) < self.pt["email_open"][p]]
        po = pop.persona[opened]
        irrelevant = rnd.uniform(Purpose.EMAIL_IRRELEVANT, day, opened) < fx.irrelevant_email_share
        if "irrelevant_email" in self.removed:
            irrelevant[:] = False
        self.occurrences["irrelevant_email"][opened[irrelevant]] += 1
        unsub_p = np.where(irrelevant, fx.irrelevant_email_unsubscribe, fx.email_unsubscribe) * pop.impatience[opened]
        unsub = rnd.uniform(Purpose.UNSUBSCRIBE, day, opened) < unsub_p
        click_p = self.pt["email_click"][po] * np.where(irrelevant, fx.irrelevant_email_click, 1.0)
        click = ~unsub & (rnd.uniform(Purpose.EMAIL_CLICK, day, opened) < click_p)
        email_click[opened[click]] = True
        left = opened[unsub]
        self.alive[left] = False
        self.exited[left] = True
        t = _in_window(EMAIL_WINDOW, rnd.uniform(Purpose.EMAIL_TIME, day, opened))
        self.emit(opened, day, t, ET["email_open"], CH["email"], K_EMAIL, irrelevant=irrelevant.astype(np.float64))
        self.emit(left, day, t[unsub] + 40, ET["unsubscribe"], CH["email"], K_EMAIL)
        return email_click

    def daily_sessions(self, day: int, kind: int, email_click: np.ndarray | None) -> None:
        """Who browses in this session window (the morning one also takes arrivals and clicks)."""
        pop = self.pop
        cand = np.flatnonzero(self.alive)
        if len(cand) == 0:
            return
        slot = 0 if kind == K_S0 else 1
        p_session = pop.activity[cand] * np.where(self.purchases[cand] > 0, self.pt["repeat"][pop.persona[cand]], 1.0)
        if slot == 1:
            p_session = p_session * 0.35  # evening sessions are rarer
        go = self.rnd.uniform(Purpose.SESSION, day, cand, slot) < p_session
        if email_click is not None:
            go |= (pop.arrival[cand] == day) | email_click[cand]
        idx = cand[go]
        via_email = email_click[idx] if email_click is not None else np.zeros(len(idx), bool)
        self.run_sessions(day, kind, idx, via_email)

    def deliveries(self, day: int) -> np.ndarray:
        """Deliveries due today (logged even after churn); returns who contacts support."""
        fx, rnd = self.fx, self.rnd
        due = self.dq_day == day
        if not due.any():
            return np.zeros(0, np.int64)
        dc, dd = self.dq_cust[due], self.dq_delay[due]
        self.dq_cust, self.dq_day, self.dq_delay = self.dq_cust[~due], self.dq_day[~due], self.dq_delay[~due]
        late = dd >= 2
        self.occurrences["late_delivery"][dc[late]] += 1
        # Two parcels for one customer on one day arrive 10 minutes apart, not as
        # duplicate rows (which a loader would reject).
        t = _in_window(DELIVERY_WINDOW, rnd.uniform(Purpose.DELIVERY_TIME, day, dc)) + 600 * repeat_rank(dc)
        self.emit(dc, day, t, ET["delivery"], CH["logistics"], K_DELIVERY, delay=dd)
        live = self.alive[dc]
        self.last["late_delivery"][dc[late & live]] = day
        # Support is more likely after a late delivery; advocacy comes 1-4 days later.
        support_p = np.where(late, fx.support_after_late, fx.support_after_delivery)
        support_due = dc[live & (rnd.uniform(Purpose.SUPPORT_AFTER, day, dc) < support_p)]
        adv = live
        self.aq_cust = np.concatenate([self.aq_cust, dc[adv]])
        delay = np.floor(rnd.uniform(Purpose.ADVOCACY_DELAY, day, dc[adv]) * 4).astype(np.int32)
        self.aq_day = np.concatenate([self.aq_day, day + 1 + delay])
        self.aq_late = np.concatenate([self.aq_late, late[adv]])
        return support_due

    def support(self, day: int, support_due: np.ndarray) -> None:
        """Support contacts: after deliveries and in the background for buyers."""
        fx, rnd = self.fx, self.rnd
        bg = np.flatnonzero(self.alive & (self.purchases > 0))
        bg = bg[rnd.uniform(Purpose.SUPPORT_BG, day, bg) < fx.support_background]
        contact = np.union1d(support_due, bg)
        if not len(contact):
            return
        long_wait = rnd.uniform(Purpose.LONG_WAIT, day, contact) < fx.support_wait_share
        if "support_wait" in self.removed:
            long_wait[:] = False
        u_wait = rnd.uniform(Purpose.WAIT, day, contact)
        wait = np.round(np.where(long_wait, 30.0 - np.log(u_wait) * 35.0, 1.0 + u_wait * 24.0), 1)
        self.occurrences["support_wait"][contact[long_wait]] += 1
        self.last["support_wait"][contact[long_wait]] = day
        ch = np.where(rnd.uniform(Purpose.SUPPORT_CHANNEL, day, contact) < 0.5, CH["phone"], CH["chat"])
        t = _in_window(SUPPORT_WINDOW, rnd.uniform(Purpose.SUPPORT_TIME, day, contact))
        self.emit(contact, day, t, ET["support_contact"], ch, K_SUPPORT, wait=wait)

    def advocacy(self, day: int) -> None:
        """Reviews and referrals a few days after a delivery, soured by friction."""
        fx, rnd = self.fx, self.rnd
        due = self.aq_day == day
        if not due.any():
            return
        ac, al = self.aq_cust[due], self.aq_late[due]
        self.aq_cust, self.aq_day, self.aq_late = self.aq_cust[~due], self.aq_day[~due], self.aq_late[~due]
        keep = self.alive[ac]
        ac, al = ac[keep], al[keep]
        p = self.pop.persona[ac]
        mult = np.where(al, fx.late_delivery_advocacy, 1.0)
        # A long support wait in the window also sours the customer.
        mult = mult * np.where(self.active("support_wait", ac, day), fx.support_wait_intent, 1.0)
        review = rnd.uniform(Purpose.REVIEW, day, ac) < self.pt["review"][p] * mult
        referral = rnd.uniform(Purpose.REFERRAL, day, ac) < self.pt["referral"][p] * mult
        t = _in_window(ADVOCACY_WINDOW, rnd.uniform(Purpose.ADVOCACY_TIME, day, ac)) + 120 * repeat_rank(ac)
        # One chunk, ordered by customer then time: a customer with two parcels can
        # review and refer twice, and the assembly relies on per-chunk time order.
        a_cust = np.concatenate([ac[review], ac[referral]])
        a_sec = np.concatenate([t[review], t[referral] + 60])
        a_type = np.concatenate([np.full(review.sum(), ET["review"]), np.full(referral.sum(), ET["referral"])])
        a_chan = np.concatenate([np.full(review.sum(), CH["web"]), np.full(referral.sum(), CH["word_of_mouth"])])
        o = np.lexsort((a_sec, a_cust))
        self.emit(a_cust[o], day, a_sec[o], a_type[o], a_chan[o], K_ADVOCACY)

    # ------------------------------------------------------------------ one session window
    def run_sessions(self, day: int, kind: int, idx: np.ndarray, via_email: np.ndarray) -> None:
        """Sessions of customers ``idx``: entry, page views, cart, checkout, purchase.

        Each session is a row of slots (``vocab.SLOT_*``); ``happens`` marks the events
        that take place, in slot order, which is their time order.
        """
        m = len(idx)
        if m == 0:
            return
        slot = 0 if kind == K_S0 else 1
        p = self.pop.persona[idx]
        first = self.sessions[idx] == 0
        u_ch = self.rnd.uniform(Purpose.CHANNEL, day, idx, slot)
        channel = np.where(first, pick(self.pt["acquisition_cdf"][p], u_ch), pick(self.pt["habits_cdf"][p], u_ch))
        channel = np.where(via_email & ~first, CH["email"], channel).astype(np.int8)
        types = np.full((m, N_SLOTS), -1, dtype=np.int8)
        happens = np.zeros((m, N_SLOTS), dtype=bool)
        types[:, SLOT_ENTRY] = ENTRY_EVENT[channel]
        happens[:, SLOT_ENTRY] = True
        going = self._browse(day, slot, idx, p, types, happens)
        value = self._checkout(day, slot, idx, p, going, types, happens)

        self.sessions[idx] += 1
        opt_in = first & (self.pop.optin_u[idx] < self.pt["email_optin"][p])
        self.subscribed[idx[opt_in]] = True

        if self.collect:
            rnd = self.rnd
            # 15 s to ~4 min between clicks; a session stays well under an hour.
            u_gap = rnd.uniform_slots(Purpose.GAP, day, idx, range(slot * 100, slot * 100 + N_SLOTS))
            gaps = 15 + np.minimum(-np.log(u_gap) * 50, 220).astype(np.int64)
            gaps[:, 0] = _in_window(SESSION_WINDOWS[slot], rnd.uniform(Purpose.START, day, idx, slot))
            # Slots in time order (a placebo banner right after its view).
            happens, types, gaps = happens[:, SLOT_ORDER], types[:, SLOT_ORDER], gaps[:, SLOT_ORDER]
            sec = np.cumsum(np.where(happens, gaps, 0), axis=1)
            rows, cols = np.nonzero(happens)
            rev = np.where(SLOT_ORDER[cols] == SLOT_PURCHASE, value[rows], 0.0)
            self.emit(idx[rows], day, sec[rows, cols], types[rows, cols], channel[rows], kind, revenue=rev)

    def _browse(
        self, day: int, slot: int, idx: np.ndarray, p: np.ndarray, types: np.ndarray, happens: np.ndarray
    ) -> np.ndarray:
        """Page views and their timeouts (filled into the slots); returns who is still browsing."""
        fx, rnd = self.fx, self.rnd
        m = len(idx)
        depth = self.pt["browse_depth"][p]
        q = 1.0 - 1.0 / np.maximum(depth, 1.0 + 1e-9)
        n_views = np.minimum(1 + np.floor(np.log(rnd.uniform(Purpose.VIEWS, day, idx, slot)) / np.log(q)), MAX_VIEWS)
        going = np.ones(m, dtype=bool)
        abandon_p = np.minimum(fx.page_timeout_abandon * self.pop.impatience[idx], 1.0)
        timed_out = np.zeros(m, dtype=bool)
        view_slots = range(slot * 100, slot * 100 + MAX_VIEWS)
        content = rnd.uniform_slots(Purpose.VIEW_TYPE, day, idx, view_slots) < self.pt["content_share"][p][:, None]
        # Occurrence draws are made whether or not the friction is removed (CRN).
        timeout_all = rnd.uniform_slots(Purpose.TIMEOUT, day, idx, view_slots) < fx.page_timeout_rate
        if "page_timeout" in self.removed:
            timeout_all[:] = False
        abandon_all = rnd.uniform_slots(Purpose.ABANDON, day, idx, view_slots) < abandon_p[:, None]
        banner = self._placebo(day, slot, idx)
        for j in range(MAX_VIEWS):
            view = going & (j < n_views)
            col = SLOT_VIEW0 + 2 * j
            types[:, col] = np.where(content[:, j], ET["content_read"], ET["product_view"])
            happens[:, col] = view
            types[:, SLOT_PLACEBO0 + j] = ET[PLACEBO_EVENT]
            happens[:, SLOT_PLACEBO0 + j] = view & banner[:, j]
            timeout = view & timeout_all[:, j]
            types[:, col + 1] = ET["page_timeout"]
            happens[:, col + 1] = timeout
            timed_out |= timeout
            going &= ~(timeout & abandon_all[:, j])
        if banner.any():
            self.occurrences[PLACEBO][idx] += happens[:, SLOT_PLACEBO0:].sum(1).astype(np.int32)
        if timed_out.any():
            hit = idx[timed_out]
            counts = happens[timed_out, SLOT_VIEW0 + 1 : SLOT_CART : 2].sum(1).astype(np.int32)
            self.occurrences["page_timeout"][hit] += counts
            self.last["page_timeout"][hit] = day
        return going

    def _checkout(
        self, day: int, slot: int, idx: np.ndarray, p: np.ndarray, going: np.ndarray,
        types: np.ndarray, happens: np.ndarray,
    ) -> np.ndarray:
        """Cart, checkout (and its errors), purchase; returns each session's order value."""
        fx, rnd, pt = self.fx, self.rnd, self.pt
        warmth = np.minimum(1.0, (self.sessions[idx] + 1) / pt["research_sessions"][p])
        cart = going & (rnd.uniform(Purpose.CART, day, idx, slot) < pt["cart"][p] * warmth * self.intent(idx, day))
        checkout = cart & (rnd.uniform(Purpose.CHECKOUT, day, idx, slot) < pt["checkout"][p])
        error = checkout & (rnd.uniform(Purpose.ERROR, day, idx, slot) < fx.checkout_error_rate)
        if "checkout_error" in self.removed:
            error[:] = False
        complete = pt["complete"][p] * np.where(error, fx.checkout_error_complete, 1.0)
        bought = checkout & (rnd.uniform(Purpose.BUY, day, idx, slot) < complete)
        for col, mask, et in (
            (SLOT_CART, cart, "add_to_cart"),
            (SLOT_CHECKOUT, checkout, "checkout_start"),
            (SLOT_ERROR, error, "checkout_error"),
            (SLOT_RETRY, error & bought, "checkout_start"),
            (SLOT_PURCHASE, bought, "purchase"),
        ):
            types[:, col] = ET[et]
            happens[:, col] = mask
        if error.any():
            self.occurrences["checkout_error"][idx[error]] += 1
            self.last["checkout_error"][idx[error]] = day
        value = np.zeros(len(idx))
        if bought.any():
            b = idx[bought]
            pb = p[bought]
            value_b = np.round(np.exp(pt["order_mu"][pb] + pt["order_sigma"][pb] * rnd.normal(Purpose.VALUE, day, b, slot)), 2)
            value[bought] = value_b
            self.revenue[b] += value_b
            self.purchases[b] += 1
            self._ship(day, slot, b)
        return value

    def _placebo(self, day: int, slot: int, idx: np.ndarray) -> np.ndarray:
        """Which views get the placebo banner (``error_banner``, no effect): ``(len(idx), MAX_VIEWS)``."""
        rate = self.fx.placebo_rate
        if rate <= 0 or PLACEBO in self.removed:
            return np.zeros((len(idx), MAX_VIEWS), dtype=bool)
        view_slots = range(slot * 100, slot * 100 + MAX_VIEWS)
        return self.rnd.uniform_slots(Purpose.PLACEBO, day, idx, view_slots) < rate

    def _ship(self, day: int, slot: int, b: np.ndarray) -> None:
        """Schedule the deliveries of today's orders by customers ``b``.

        1-4 shipping days; late ones are 2-6 days late. The on-time value is drawn for
        everyone so removing lateness only changes the outcome.
        """
        rnd = self.rnd
        ship = 1 + np.floor(rnd.uniform(Purpose.SHIP, day, b, slot) * 4).astype(np.int32)
        late = rnd.uniform(Purpose.LATE, day, b, slot) < self.fx.late_delivery_rate
        ontime_delay = (rnd.uniform(Purpose.ONTIME, day, b, slot) < 0.2).astype(np.float64)
        late_delay = 2.0 + np.floor(rnd.uniform(Purpose.DELAY, day, b, slot) * 5)
        delay = ontime_delay if "late_delivery" in self.removed else np.where(late, late_delay, ontime_delay)
        self.dq_cust = np.concatenate([self.dq_cust, b])
        self.dq_day = np.concatenate([self.dq_day, day + ship + delay.astype(np.int32)])
        self.dq_delay = np.concatenate([self.dq_delay, delay])
