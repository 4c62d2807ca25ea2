#!/usr/bin/env python3
"""Reference for concurrent_media.py: a bare Twisted UDP echo, one socket per
stream, nothing else (no SIP, no media clock).  Prints the ports as one JSON
line on stdout, then echoes every datagram back to its sender until SIGTERM.

    python bench/bare_echo.py 1000
"""

import json
import sys

from twisted.internet import reactor
from twisted.internet.protocol import DatagramProtocol


class Echo(DatagramProtocol):
    def datagramReceived(self, data, addr):
        self.transport.write(data, addr)


def main() -> None:
    n = int(sys.argv[1])
    ports = [reactor.listenUDP(0, Echo(), interface="127.0.0.1").getHost().port
             for _ in range(n)]
    print(json.dumps(ports), flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
