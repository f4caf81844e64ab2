"""The name vocabulary of ``journey-ml init``: words that mark a column's role or an event
type's kind, and :func:`name_tokens`, which splits a name into those words.
"""

from __future__ import annotations

import re


def _words(text: str) -> list[str]:
    """Vocabulary written as one space-separated string (easier to read and extend)."""
    return text.split()


# Exact names are token strings joined by "_" (see name_tokens).
EXACT_NAMES: dict[str, dict[str, int]] = {
    "customer_id": dict.fromkeys(
        [
            "user_id", "userid", "user_pseudo_id", "case_concept_name", "customerid", "customer",
            "client_id", "clientid", "visitor_id", "visitorid", "account_id", "accountid",
            "cust_id", "custid", "uid", "anonymous_id", "distinct_id", "member_id", "person_id",
            "case_id", "caseid", "shopper_id", "subscriber_id", "contact_id", "buyer_id", "user",
            "visitor", "client", "customer_key", "user_key", "customer_number", "case",
        ],
        90,
    ),
    "event_type": {
        **dict.fromkeys(
            [
                "event", "event_name", "eventname", "eventtype", "concept_name", "action",
                "activity", "event_action", "activity_name", "action_name", "action_type",
                "activity_type", "interaction", "interaction_type", "event_category",
            ],
            90,
        ),
        **dict.fromkeys(["type", "step", "name"], 70),
    },
    "timestamp": {
        **dict.fromkeys(
            [
                "ts", "time", "event_timestamp", "time_timestamp", "datetime", "date_time",
                "event_time", "eventtime", "event_ts", "timestamp_utc", "time_stamp",
                "occurred_at", "created_at", "event_datetime", "logged_at", "happened_at",
                "received_at", "original_timestamp", "sent_at", "when", "epoch",
            ],
            90,
        ),
        **dict.fromkeys(["date", "event_date", "day"], 80),  # date only: loses the order within a day
    },
    "revenue": dict.fromkeys(
        [
            "value", "amount", "price", "total", "order_value", "sales", "gmv",
            "purchase_revenue", "order_total", "total_price", "event_value", "purchase_value",
            "transaction_revenue", "sale_amount", "payment_amount", "net_revenue",
            "gross_revenue", "spend", "monetary", "revenue_usd", "value_usd",
        ],
        90,
    ),
    "channel": {
        **dict.fromkeys(
            [
                "medium", "utm_medium", "marketing_channel", "channel_grouping",
                "default_channel_group", "source_medium", "traffic_medium", "traffic_source_medium",
            ],
            90,
        ),
        **dict.fromkeys(["source", "utm_source", "traffic_source", "traffic_source_source"], 75),
    },
    "session_id": dict.fromkeys(
        ["sessionid", "session", "ga_session_id", "visit_id", "visitid", "session_key"], 90
    ),
}
ENTITY_WORDS = frozenset(
    _words(
        "customer user client visitor account member person shopper subscriber contact buyer "
        "cust case patient player"
    )
)
ID_WORDS = frozenset(_words("id key uuid guid number no hash pseudo"))
EVENT_WORDS = frozenset(_words("event action activity interaction step hit"))
TIME_WORDS = frozenset(_words("timestamp ts time datetime date when epoch"))
MEASURE_WORDS = frozenset(
    _words(
        "wait waiting delay delayed latency duration lag load response elapsed queue late lateness "
        "ttfb rtt"
    )
)
MONEY_WORDS = frozenset(_words("revenue value amount price total sales gmv spend monetary subtotal"))
NOT_MONEY_WORDS = frozenset(
    _words(
        "id count qty quantity number time date ts timestamp score rating views page session rank "
        "index position tax shipping discount fee cost"
    )
) | MEASURE_WORDS
NOT_ID_WORDS = frozenset(_words("session event order product item transaction campaign page sku"))
NOT_EVENT_WORDS = TIME_WORDS | ID_WORDS | MONEY_WORDS | frozenset(_words("at count number params param properties"))
NOT_SESSION_WORDS = frozenset(_words("number count engaged duration length start time timestamp ts date"))

# Event-type vocabulary. Priority: strong friction > exit > conversion.
FRICTION_WORDS = frozenset(
    _words(
        "error errors timeout timeouts timedout fail failed failure failures fails failing bug bugs "
        "exception crash crashed invalid"
    )
)
EXIT_WORDS = frozenset(
    _words(
        "unsubscribe unsubscribed unsub optout cancel canceled cancelled cancellation churn churned "
        "refund refunded delete deleted deactivate deactivated uninstall uninstalled declined denied "
        "rejected terminated withdraw withdrawn closed"
    )
)
# A declined payment is a friction, a declined application an exit.
ATTEMPT_WORDS = frozenset(
    _words("payment card transaction checkout login otp captcha auth pay coupon promo voucher code discount")
)
CONVERSION_WORDS = frozenset(
    _words(
        "purchase purchased buy bought transaction subscribe subscribed signup registered "
        "activated activation accepted approved converted conversion won paid booked booking "
        "order ordered"
    )
)
NOT_CONVERSION_WORDS = frozenset(_words("view views viewed page status history search track tracking list"))
# Token pairs that name a conversion together ("sign up", "checkout completed").
CONVERSION_PAIRS = (("sign", "up"), ("signed", "up"), ("checkout", "completed"), ("checkout", "complete"),
                     ("checkout", "success"), ("payment", "succeeded"), ("payment", "success"))


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def name_tokens(name: str) -> tuple[str, ...]:
    """Lower-case word tokens of a column or event name.

    >>> name_tokens("userId"), name_tokens("case:concept:name"), name_tokens("A_SUBMITTED")
    (('user', 'id'), ('case', 'concept', 'name'), ('a', 'submitted'))
    """
    spaced = _CAMEL.sub("_", str(name))
    return tuple(t for t in re.split(r"[^0-9a-zA-Z]+", spaced.lower()) if t)
