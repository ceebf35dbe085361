#!/usr/bin/env python3
"""Writes raw 8 kHz u-law as a pcap of RTP (PT 0, 20 ms packets) that sipp's
play_pcap_audio replays; loops the audio to fill SECONDS."""
import struct, sys

src, dst, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3])
audio = open(src, "rb").read()
frames = [audio[i:i + 160] for i in range(0, len(audio) - 159, 160)]
n = seconds * 50
with open(dst, "wb") as f:
    f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for i in range(n):
        rtp = struct.pack("!BBHII", 0x80, 0, (1000 + i) & 0xFFFF, (160 * i) & 0xFFFFFFFF, 0x5EED0001) + frames[i % len(frames)]
        udp = struct.pack("!HHHH", 6000, 6002, 8 + len(rtp), 0) + rtp
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1])) + udp
        pkt = b"\0" * 12 + b"\x08\x00" + ip
        t = i * 20000
        f.write(struct.pack("<IIII", t // 1000000, t % 1000000, len(pkt), len(pkt)) + pkt)
