"""CRC-32 of model and grammar files, checked before anything in them is parsed.

`binascii.crc32` where the port has it (every stock ESP32-S3 build does); otherwise a bitwise
CRC-32 (slow, load time only).
"""

try:
    from binascii import crc32
except ImportError:  # a port built without it

    def crc32(data, crc=0):
        crc ^= 0xFFFFFFFF
        for b in data:
            crc ^= b
            for _ in range(8):
                crc = (crc >> 1) ^ (0xEDB88320 if crc & 1 else 0)
        return crc ^ 0xFFFFFFFF
