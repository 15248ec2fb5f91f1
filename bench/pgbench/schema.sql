-- The pgbench ceiling's own table, shaped like inventory's `products` (same columns, types and checks;
-- inventory-service/inventory_service/migrations/versions/0001_initial.py), in its own database.
-- One hot row and 100 spread rows, with stock so large that it never runs out during a run.
DROP TABLE IF EXISTS products;
CREATE TABLE products (
    product_id VARCHAR(64) PRIMARY KEY,
    name VARCHAR(200) NOT NULL,
    price NUMERIC(12, 2) NOT NULL,
    available_quantity BIGINT NOT NULL,
    reserved_quantity BIGINT NOT NULL DEFAULT 0,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL,
    CONSTRAINT available_not_negative CHECK (available_quantity >= 0),
    CONSTRAINT reserved_not_negative CHECK (reserved_quantity >= 0),
    CONSTRAINT price_not_negative CHECK (price >= 0)
);
INSERT INTO products VALUES ('BENCH-HOT', 'hot product', 9.99, 1000000000000000, 0, now(), now());
INSERT INTO products
SELECT 'BENCH-' || lpad(i::text, 3, '0'), 'spread product ' || i, 9.99, 1000000000000000, 0, now(), now()
FROM generate_series(1, 100) AS i;
