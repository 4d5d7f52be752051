"""HTTP: the media Asterisk fetches (recordings, synthesized speech); later the console."""
