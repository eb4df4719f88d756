"""Database: tables, engine, transactions and migrations."""
