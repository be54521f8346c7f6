"""The board test's Chromium and embedded-server fixtures, shared with the browser check here."""

from tests.board.test_board_page import api, browser, server

__all__ = ["api", "browser", "server"]
