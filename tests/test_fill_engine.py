"""Queue-position fills driven through NautilusTrader's BacktestEngine with hand-built L2 books.

Each scenario is a script: book deltas and trades at given nanosecond times, plus strategy actions
(submit / modify / cancel) fired by time alerts between them. The venue is L2_MBP with
``trade_execution=True``, ``QueuePositionFillModel`` and ``QueuePositionModule``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig
from nautilus_trader.backtest.models import FillModel
from nautilus_trader.config import LoggingConfig
from nautilus_trader.model.currencies import USD
from nautilus_trader.model.data import (
    BookOrder,
    OrderBookDelta,
    OrderBookDeltas,
    QuoteTick,
    TradeTick,
)
from nautilus_trader.model.enums import (
    AccountType,
    AggressorSide,
    BookAction,
    BookType,
    OmsType,
    OrderSide,
)
from nautilus_trader.model.identifiers import TradeId, Venue
from nautilus_trader.model.objects import Money, Price, Quantity
from nautilus_trader.test_kit.providers import TestInstrumentProvider
from nautilus_trader.trading.strategy import Strategy

from backtests.fill.nautilus_model import (
    QueueFillModelConfig,
    QueueModuleConfig,
    QueuePositionFillModel,
    QueuePositionModule,
)
from backtests.fill.queue import QueueBook

INSTRUMENT = TestInstrumentProvider.equity(symbol="ES", venue="XCME")
BID, ASK = OrderSide.BUY, OrderSide.SELL
Action = Callable[["ScriptStrategy"], None]


class ScriptStrategy(Strategy):
    """Runs each scripted action at its time; keeps the orders it made by label."""

    def __init__(self, actions: list[tuple[int, Action]]) -> None:
        super().__init__()
        self.actions = actions
        self.orders: dict[str, object] = {}

    def on_start(self) -> None:
        for i, (ts, action) in enumerate(self.actions):
            self.clock.set_time_alert_ns(
                f"action-{i}", ts, lambda _e, act=action: act(self)
            )

    def _limit(self, label: str, side: OrderSide, price: float, qty: int) -> None:
        order = self.order_factory.limit(
            INSTRUMENT.id, side, Quantity.from_int(qty), Price(price, 2), post_only=True
        )
        self.orders[label] = order
        self.submit_order(order)


def submit(label: str, side: OrderSide, price: float, qty: int) -> Action:
    return lambda s: s._limit(label, side, price, qty)


def modify(label: str, price: float) -> Action:
    return lambda s: s.modify_order(s.orders[label], price=Price(price, 2))


def cancel(label: str) -> Action:
    return lambda s: s.cancel_order(s.orders[label])


def level(
    ts: int,
    side: OrderSide,
    price: float,
    size: int,
    action: BookAction = BookAction.UPDATE,
) -> OrderBookDelta:
    """An L2 delta: the displayed size at ``price`` becomes ``size``."""
    if size == 0:
        action = BookAction.DELETE
    order = BookOrder(side, Price(price, 2), Quantity.from_int(size), 0)
    return OrderBookDelta(
        INSTRUMENT.id, action, order, flags=128, sequence=0, ts_event=ts, ts_init=ts
    )


def trade(ts: int, price: float, size: int, aggressor: AggressorSide) -> TradeTick:
    return TradeTick(
        INSTRUMENT.id,
        Price(price, 2),
        Quantity.from_int(size),
        aggressor,
        TradeId(f"T{ts}"),
        ts,
        ts,
    )


SELLER, BUYER = AggressorSide.SELLER, AggressorSide.BUYER


def book(ts: int, bid_size: int = 5, ask_size: int = 5) -> list[OrderBookDelta]:
    """A two-sided book: 100.00 bid, 101.00 ask."""
    return [
        level(ts, BID, 100.00, bid_size, BookAction.ADD),
        level(ts, ASK, 101.00, ask_size, BookAction.ADD),
    ]


def run(
    data: list,
    actions: list[tuple[int, Action]],
    model: str = "risk_averse",
    n: float = 2.0,
    fill_model=None,
    modules: list | None = None,
    book_type: BookType = BookType.L2_MBP,
):
    engine = BacktestEngine(
        BacktestEngineConfig(logging=LoggingConfig(bypass_logging=True))
    )
    queue_model = fill_model is None
    if modules is None and queue_model:
        module = QueuePositionModule(QueueModuleConfig())
        module.verify = True  # after every data item: incremental state == a full re-read of the venue
        modules = [module]
    engine.add_venue(
        venue=Venue("XCME"),
        oms_type=OmsType.NETTING,
        account_type=AccountType.MARGIN,
        starting_balances=[Money(10_000_000, USD)],
        base_currency=USD,
        fill_model=QueuePositionFillModel(QueueFillModelConfig(model=model, n=n))
        if queue_model
        else fill_model,
        modules=modules if modules is not None else [],
        book_type=book_type,
        trade_execution=True,
    )
    engine.add_instrument(INSTRUMENT)
    engine.add_data(sorted(data, key=lambda d: d.ts_init))
    strategy = ScriptStrategy(actions)
    engine.add_strategy(strategy)
    engine.run()
    filled = {label: int(order.filled_qty) for label, order in strategy.orders.items()}
    fill_ts = {
        label: [e.ts_event for e in order.events if type(e).__name__ == "OrderFilled"]
        for label, order in strategy.orders.items()
    }
    for module in modules or []:
        assert not getattr(module, "verify_errors", []), module.verify_errors[:5]
    engine.dispose()
    return filled, fill_ts


def test_order_behind_five_lots_fills_only_after_more_than_five_trade():
    data = [
        *book(1),
        trade(10, 100.00, 3, SELLER),
        trade(20, 100.00, 2, SELLER),
        trade(30, 100.00, 1, SELLER),
    ]
    filled, fill_ts = run(data, [(5, submit("b", BID, 100.00, 1))])
    assert filled["b"] == 1
    assert fill_ts["b"] == [30]  # the first 5 lots traded were the queue in front


def test_partial_fill_by_the_excess_of_a_trade_over_the_queue_ahead():
    data = [*book(1), trade(10, 100.00, 7, SELLER)]
    filled, _ = run(data, [(5, submit("b", BID, 100.00, 4))])
    assert filled["b"] == 2


def test_trade_on_the_other_side_does_not_fill():
    data = [*book(1), trade(10, 101.00, 20, BUYER)]
    filled, _ = run(data, [(5, submit("b", BID, 100.00, 1))])
    assert filled["b"] == 0


def test_stock_fill_model_ignores_queue_prints_but_both_fill_when_the_book_crosses():
    """Why the hook is needed: in 1.221 (L2_MBP, trade_execution) seller prints at a resting bid never
    reach it with the stock model; ours fills once the queue in front has traded."""
    prints = [*book(1), trade(10, 100.00, 10, SELLER)]
    stock, _ = run(prints, [(5, submit("b", BID, 100.00, 1))], fill_model=FillModel())
    queued, _ = run(prints, [(5, submit("b", BID, 100.00, 1))])
    assert (stock["b"], queued["b"]) == (0, 1)
    crossed = [*book(1), level(10, ASK, 100.00, 3, BookAction.ADD)]
    stock, _ = run(crossed, [(5, submit("b", BID, 100.00, 1))], fill_model=FillModel())
    queued, _ = run(crossed, [(5, submit("b", BID, 100.00, 1))])
    assert (stock["b"], queued["b"]) == (1, 1)


def test_risk_averse_keeps_queue_when_level_shrinks_but_clamps_to_displayed():
    # 5 ahead; level drops to 3 (cancels, all assumed behind us) -> ahead clamps to 3.
    data = [*book(1), level(10, BID, 100.00, 4), trade(20, 100.00, 3, SELLER)]
    filled, _ = run(data, [(5, submit("b", BID, 100.00, 1))], model="risk_averse")
    assert filled["b"] == 0  # ahead 4 after the shrink, 3 traded
    data = [*book(1), level(10, BID, 100.00, 2), trade(20, 100.00, 3, SELLER)]
    filled, _ = run(data, [(5, submit("b", BID, 100.00, 1))], model="risk_averse")
    assert filled["b"] == 1  # only 2 can be ahead once 2 are shown


def test_probabilistic_model_moves_the_order_up_on_cancels():
    # Order joins behind 5; 5 more join behind it; 6 cancel. power n=1: share in front = 5/10.
    data = [
        *book(1),
        level(10, BID, 100.00, 10),
        level(15, BID, 100.00, 4),
        trade(20, 100.00, 3, SELLER),
    ]
    averse, _ = run(data, [(5, submit("b", BID, 100.00, 1))], model="risk_averse")
    power, _ = run(data, [(5, submit("b", BID, 100.00, 1))], model="power", n=1.0)
    assert averse["b"] == 0  # ahead stays 4 (clamped to the 4 shown), 3 traded
    assert power["b"] == 1  # ahead 5 - 6 * 0.5 = 2, so the 3-lot print reaches it


def test_trade_then_matching_depth_decrease_is_not_counted_twice():
    # 3 trade (ahead 5 -> 2), then the book shows the level at 2: that decrease is the trade, not cancels.
    data = [
        *book(1),
        trade(10, 100.00, 3, SELLER),
        level(11, BID, 100.00, 2),
        trade(20, 100.00, 2, SELLER),
    ]
    filled, _ = run(data, [(5, submit("b", BID, 100.00, 1))], model="power", n=1.0)
    assert filled["b"] == 0  # exactly the 2 ahead traded
    data[-1] = trade(20, 100.00, 3, SELLER)
    filled, _ = run(data, [(5, submit("b", BID, 100.00, 1))], model="power", n=1.0)
    assert filled["b"] == 1


def test_modify_to_a_new_price_goes_to_the_back_of_the_new_queue():
    data = [
        *book(1),
        level(2, BID, 99.00, 4, BookAction.ADD),
        trade(10, 100.00, 5, SELLER),  # clears the 5 ahead of us at 100
        trade(30, 99.00, 4, SELLER),  # only the 4 already shown at 99 trade
        trade(40, 99.00, 1, SELLER),
    ]
    _filled, fill_ts = run(
        data, [(5, submit("b", BID, 100.00, 1)), (7, modify("b", 99.00))]
    )
    assert fill_ts["b"] == [40]


def test_two_of_our_orders_at_one_price_share_one_trade():
    # 2 ahead, then our a (2 lots) and b (2 lots). A 5-lot print: 2 market, a fills 2, b gets 1.
    data = [*book(1, bid_size=2), trade(10, 100.00, 5, SELLER)]
    filled, _ = run(
        data, [(5, submit("a", BID, 100.00, 2)), (6, submit("b", BID, 100.00, 2))]
    )
    assert filled == {"a": 2, "b": 1}


def test_order_at_a_price_with_nothing_displayed_is_first_in_line():
    # Bid 100.50 inside the spread: nothing ahead. A seller printing 2 at 100.00 traded through it.
    data = [*book(1), trade(10, 100.00, 2, SELLER)]
    filled, fill_ts = run(data, [(5, submit("b", BID, 100.50, 3))])
    assert filled["b"] == 2 and fill_ts["b"] == [10]


def test_cancelled_order_is_forgotten_and_never_fills():
    data = [*book(1), trade(20, 100.00, 9, SELLER)]
    filled, _ = run(data, [(5, submit("b", BID, 100.00, 1)), (10, cancel("b"))])
    assert filled["b"] == 0


@pytest.mark.parametrize("model", ["risk_averse", "power", "log"])
def test_sell_side_mirrors_buy_side(model):
    data = [*book(1), trade(10, 101.00, 5, BUYER), trade(20, 101.00, 1, BUYER)]
    _, fill_ts = run(data, [(5, submit("s", ASK, 101.00, 1))], model=model)
    assert fill_ts["s"] == [20]


def test_batched_deltas_and_a_clear_move_the_queue_like_single_deltas():
    # A snapshot batch (CLEAR + ADDs) re-shows the bid at 2: only 2 can still be ahead of us.
    batch = OrderBookDeltas(
        INSTRUMENT.id,
        [
            OrderBookDelta.clear(INSTRUMENT.id, 0, 10, 10),
            level(10, BID, 100.00, 2, BookAction.ADD),
            level(10, ASK, 101.00, 5, BookAction.ADD),
        ],
    )
    data = [*book(1), batch, trade(20, 100.00, 3, SELLER)]
    filled, fill_ts = run(data, [(5, submit("b", BID, 100.00, 1))])
    assert filled["b"] == 1 and fill_ts["b"] == [20]


def test_deltas_away_from_our_levels_cost_no_queue_work(monkeypatch):
    """A deep, busy book must not make every delta re-read our levels (the cost on real data)."""
    calls = []
    on_depth = QueueBook.on_depth
    monkeypatch.setattr(
        QueueBook, "on_depth", lambda self, *a: (calls.append(a), on_depth(self, *a))[1]
    )
    churn = [
        level(10 + i, BID, 90.00 - (i % 50) * 0.01, 1 + i % 7, BookAction.ADD)
        for i in range(2000)
    ]
    data = [
        *book(1),
        *churn,
        level(5000, BID, 100.00, 4),
        trade(6000, 100.00, 5, SELLER),
    ]
    filled, _ = run(data, [(5, submit("b", BID, 100.00, 1))])
    assert filled["b"] == 1  # 4 ahead after the cancel, 5 traded
    # Placement, the one delta at 100.00 and the trade; nothing for the churn.
    assert len(calls) <= 5


def test_random_script_keeps_incremental_state_equal_to_a_full_reread():
    """Many levels, trades, and our orders placed, moved and cancelled: ``verify`` (on in ``run``)
    compares sizes and queue membership with the venue after every data item."""
    import random

    rng = random.Random(7)
    data = [*book(1, 20, 20)]
    for i in range(1500):
        ts = 10 + i * 10
        if rng.random() < 0.15:
            side = rng.choice([BID, ASK])
            px = 100.00 - rng.randrange(3) if side == BID else 101.00 + rng.randrange(3)
            data.append(
                trade(ts, px, rng.randint(1, 8), SELLER if side == BID else BUYER)
            )
        else:
            side = rng.choice([BID, ASK])
            px = 100.00 - rng.randrange(5) if side == BID else 101.00 + rng.randrange(5)
            data.append(level(ts, side, px, rng.randint(0, 30)))
    actions = []
    for i in range(40):
        ts = 15 + i * 370
        label = f"o{i}"
        side = BID if i % 2 == 0 else ASK
        px = 100.00 - rng.randrange(3) if side == BID else 101.00 + rng.randrange(3)
        actions.append((ts, submit(label, side, px, rng.randint(1, 6))))
        if i % 3 == 0:
            new_px = px - 1 if side == BID else px + 1
            actions.append((ts + 120, modify(label, new_px)))
        if i % 4 == 1:
            actions.append((ts + 250, cancel(label)))
    for model in ("risk_averse", "power"):
        filled, _ = run(data, actions, model=model)
        assert sum(filled.values()) > 0


def test_l1_book_from_quotes_is_reread_after_each_quote():
    """On an L1_MBP venue quotes move the book: the module re-reads it instead of mirroring deltas."""

    def quote(ts: int, bid_size: int) -> QuoteTick:
        return QuoteTick(
            INSTRUMENT.id,
            Price(100.00, 2),
            Price(101.00, 2),
            Quantity.from_int(bid_size),
            Quantity.from_int(5),
            ts,
            ts,
        )

    data = [quote(1, 5), quote(10, 2), trade(20, 100.00, 3, SELLER)]
    filled, _ = run(data, [(5, submit("b", BID, 100.00, 1))], book_type=BookType.L1_MBP)
    assert filled["b"] == 1  # 2 ahead once the quote shows 2, 3 traded


def test_share_below_the_size_increment_keeps_the_order_in_its_place():
    # power n=1: 5 ahead, 5 join behind, 3 cancel -> 1.5 of them in front: 3.5 ahead. A 4-lot print
    # hands the order 0.5 lot, which the venue cannot fill (1-lot increment); the order must keep its
    # place at the front rather than rejoin the back behind 7, so the next 1-lot print fills it.
    data = [
        *book(1),
        level(10, BID, 100.00, 10),
        level(15, BID, 100.00, 7),
        trade(20, 100.00, 4, SELLER),
        trade(30, 100.00, 1, SELLER),
    ]
    filled, fill_ts = run(
        data, [(5, submit("b", BID, 100.00, 3))], model="power", n=1.0
    )
    assert filled["b"] == 1 and fill_ts["b"] == [30]
