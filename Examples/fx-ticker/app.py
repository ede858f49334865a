import logging

import aerogrid

# The application object: its name is the app's name in Excel and in the console.
app = aerogrid.App('fx-ticker', broker=BROKER_URI)

# Lines logged here show in the app's log (`aerogrid app logs fx-ticker`, the console).
log = logging.getLogger('fx-ticker')
log.setLevel(logging.INFO)

# The moving average is exponential: each new price moves it by ALPHA of the way, which
# weighs roughly the last AVERAGE_TICKS prices. It needs only the previous average, so it
# fits in one grid cell.
AVERAGE_TICKS = 20
ALPHA = 2 / (AVERAGE_TICKS + 1)


# One message per price update, keyed by the pair ("EUR/USD"):
#   {"bid": 1.08493, "ask": 1.08501, "time": "2026-11-30T09:15:02.125Z"}
# or, when a pair stops trading, {"status": "delisted", "time": "..."}.
class Quote(aerogrid.Record):
    bid: float | None = None
    ask: float | None = None
    time: str = ''
    status: str = 'trading'


prices = app.topic('fx-prices', key_type=str, value_type=Quote)

# The board: the latest quote of every listed pair, one row per pair.
board = app.Grid('board', columns=['bid', 'ask', 'mid', 'change', 'spread', 'time'])

# Statistics per pair since it was (re)listed: ticks, moving average, high and low of the
# mid price. A pair seen for the first time reads the default row.
stats = app.Grid('stats', columns=['ticks', 'average', 'high', 'low'],
                 default=lambda: {'ticks': 0, 'average': None, 'high': None, 'low': None})

# Keep the state the app needs in its grids, not in Python variables: the grids are
# checkpointed with the Kafka offsets and given back to the app when it restarts, a dict
# would start empty again.


def pip_size(pair):
    # Prices of yen pairs have two decimals fewer (151.234 against 1.08493).
    return 0.01 if pair.endswith('/JPY') else 0.0001


@app.stream(prices)
async def on_quote(quotes):
    async for pair, quote in quotes.items():
        if quote.status == 'delisted':
            # Deleting a row takes it off the grid in Excel and in the console. A pair
            # listed again later starts with a fresh row (the stats' default).
            if pair in board:
                del board[pair]
            if pair in stats:
                del stats[pair]
            log.info('%s delisted: removed from the board', pair)
            continue

        mid = round((quote.bid + quote.ask) / 2, 6)
        pip = pip_size(pair)
        last = board.get(pair)  # None for a pair not on the board (get() ignores defaults)
        board[pair] = {
            'bid': quote.bid,
            'ask': quote.ask,
            'mid': mid,
            'change': 0.0 if last is None else round((mid - last['mid']) / pip, 1),  # in pips
            'spread': round((quote.ask - quote.bid) / pip, 1),                       # in pips
            'time': quote.time,
        }

        row = stats[pair]  # {'ticks': 0, ...} from the default for a new pair
        if row['ticks'] == 0:
            average = high = low = mid
        else:
            average = round(row['average'] + ALPHA * (mid - row['average']), 6)
            high = max(row['high'], mid)
            low = min(row['low'], mid)
        stats[pair] = {'ticks': row['ticks'] + 1, 'average': average, 'high': high, 'low': low}
