/*
 * A trivial native app for the IPC benchmark: it speaks docs/ipc.md on fd 3, declares one
 * stream over the topic given as argv[1], and confirms every records frame at once without
 * looking at the records. What it measures is the supervisor's side: fetching, framing,
 * sending and applying batches.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static unsigned char buffer[1 << 24];

static int read_all(unsigned char *p, size_t n) {
    while (n > 0) {
        ssize_t r = read(3, p, n);
        if (r <= 0) return -1;
        p += r; n -= (size_t)r;
    }
    return 0;
}

static void write_all(const unsigned char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(3, p, n);
        if (w <= 0) exit(3);
        p += w; n -= (size_t)w;
    }
}

static void send_frame(unsigned char type, const unsigned char *payload, uint32_t len) {
    unsigned char head[5];
    uint32_t length = htonl(len + 1);
    memcpy(head, &length, 4);
    head[4] = type;
    write_all(head, 5);
    if (len) write_all(payload, len);
}

int main(int argc, char **argv) {
    const char *topic = argc > 1 ? argv[1] : "orders";
    char hello[512];
    int n = snprintf(hello, sizeof hello,
        "{\"protocol\":\"1.0\",\"sdk\":\"native-bench/1\",\"app\":\"native\","
        "\"topics\":[{\"name\":\"%s\",\"key_type\":\"bytes\",\"value_type\":\"bytes\"}],"
        "\"grids\":[],\"streams\":[{\"name\":\"count\",\"topic\":\"%s\"}],\"produces\":[]}", topic, topic);
    send_frame(0x01, (unsigned char *)hello, (uint32_t)n);
    for (;;) {
        unsigned char head[5];
        if (read_all(head, 5) < 0) return 3;
        uint32_t length;
        memcpy(&length, head, 4);
        length = ntohl(length) - 1;
        if (length > sizeof buffer || read_all(buffer, length) < 0) return 3;
        if (head[4] == 0x14) return 0;                 /* shutdown */
        if (head[4] != 0x13) continue;                 /* restore, heartbeat… */
        /* records: u64 batch id, u16 topics, names…, u32 count */
        size_t pos = 8;
        uint16_t topics = (uint16_t)(buffer[pos] << 8 | buffer[pos + 1]);
        pos += 2;
        for (uint16_t t = 0; t < topics; t++) pos += 2 + (size_t)(buffer[pos] << 8 | buffer[pos + 1]);
        unsigned char done[24] = {0};
        memcpy(done, buffer, 8);                       /* batch id, as it came */
        memcpy(done + 8, buffer + pos, 4);             /* records */
        send_frame(0x03, done, sizeof done);
    }
}
