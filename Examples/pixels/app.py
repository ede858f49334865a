import aerogrid

# An animation streamed into a grid: each grid row is a row of pixels and each column a
# pixel's colour as '#rrggbb', which the console's grid viewer draws as colour.
app = aerogrid.App('pixels', broker=BROKER_URI)

WIDTH, HEIGHT = 64, 48
COLUMNS = [f'c{x}' for x in range(WIDTH)]  # c0 ... c63, left to right


# One message per frame (a whole picture, so the grid never shows half of one frame and
# half of the next):
#   {"frame": 42, "time": 1764494102.125, "pixels": [["#1a2b3c", ... 64 colours], ... 48 rows]}
class Frame(aerogrid.Record):
    frame: int            # the frame's number, counting from 0
    time: float           # when the producer made it (seconds since the epoch)
    pixels: list[list[str]]


frames = app.topic('pixels', key_type=str, value_type=Frame)  # key: the animation's name

# The picture: row y (0 at the top) holds the colours of the pixels (x, y) in columns cx.
picture = app.Grid('picture', columns=COLUMNS)

# How far the animation got: the last frame drawn and how many were drawn so far.
progress = app.Grid('progress', columns=['frame', 'frames', 'time'],
                    default=lambda: {'frame': None, 'frames': 0, 'time': None})


@app.stream(frames)
async def draw(stream):
    async for frame in stream:
        for y, colours in enumerate(frame.pixels[:HEIGHT]):
            row = dict(zip(COLUMNS, colours, strict=False))  # a frame's extra colours are off the grid
            # Every write travels to the server, even one that changes nothing: skip the
            # rows that look as they did in the previous frame.
            if picture.get(y) != row:
                picture[y] = row
        drawn = progress['animation']['frames'] + 1
        progress['animation'] = {'frame': frame.frame, 'frames': drawn, 'time': frame.time}
