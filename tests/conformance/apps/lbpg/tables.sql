--
-- PostgreSQL database dump
--

\restrict NqSHZGfmOMqE2DbQKcfwyMR6fTGUjSK670ibRUtbh2eyTVkP6UWG4k8K5G2ad1W

-- Dumped from database version 15.20 (Debian 15.20-0+deb12u1)
-- Dumped by pg_dump version 15.20 (Debian 15.20-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

--
-- Name: lbcompat; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA lbcompat;


SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: customer; Type: TABLE; Schema: lbcompat; Owner: -
--

CREATE TABLE lbcompat.customer (
    name text NOT NULL,
    email text,
    since timestamp with time zone,
    vip boolean,
    visits integer,
    id integer NOT NULL
);


--
-- Name: customer_id_seq; Type: SEQUENCE; Schema: lbcompat; Owner: -
--

CREATE SEQUENCE lbcompat.customer_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: customer_id_seq; Type: SEQUENCE OWNED BY; Schema: lbcompat; Owner: -
--

ALTER SEQUENCE lbcompat.customer_id_seq OWNED BY lbcompat.customer.id;


--
-- Name: order; Type: TABLE; Schema: lbcompat; Owner: -
--

CREATE TABLE lbcompat."order" (
    code text,
    total integer,
    placedat timestamp with time zone,
    customerid integer,
    id integer NOT NULL
);


--
-- Name: order_id_seq; Type: SEQUENCE; Schema: lbcompat; Owner: -
--

CREATE SEQUENCE lbcompat.order_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: order_id_seq; Type: SEQUENCE OWNED BY; Schema: lbcompat; Owner: -
--

ALTER SEQUENCE lbcompat.order_id_seq OWNED BY lbcompat."order".id;


--
-- Name: customer id; Type: DEFAULT; Schema: lbcompat; Owner: -
--

ALTER TABLE ONLY lbcompat.customer ALTER COLUMN id SET DEFAULT nextval('lbcompat.customer_id_seq'::regclass);


--
-- Name: order id; Type: DEFAULT; Schema: lbcompat; Owner: -
--

ALTER TABLE ONLY lbcompat."order" ALTER COLUMN id SET DEFAULT nextval('lbcompat.order_id_seq'::regclass);


--
-- Data for Name: customer; Type: TABLE DATA; Schema: lbcompat; Owner: -
--

INSERT INTO lbcompat.customer VALUES ('Ann', 'ann@x.io', '2024-02-29 10:20:30.456+00', true, 3, 1);
INSERT INTO lbcompat.customer VALUES ('Bob', NULL, '2023-01-01 00:00:00+00', false, NULL, 2);


--
-- Data for Name: order; Type: TABLE DATA; Schema: lbcompat; Owner: -
--

INSERT INTO lbcompat."order" VALUES ('A1', 10, '2024-03-01 00:00:00+00', 1, 1);
INSERT INTO lbcompat."order" VALUES ('A2', 25, '2024-03-02 12:00:00+00', 1, 2);
INSERT INTO lbcompat."order" VALUES ('B1', 7, NULL, 2, 3);


--
-- Name: customer_id_seq; Type: SEQUENCE SET; Schema: lbcompat; Owner: -
--

SELECT pg_catalog.setval('lbcompat.customer_id_seq', 2, true);


--
-- Name: order_id_seq; Type: SEQUENCE SET; Schema: lbcompat; Owner: -
--

SELECT pg_catalog.setval('lbcompat.order_id_seq', 3, true);


--
-- Name: customer customer_pkey; Type: CONSTRAINT; Schema: lbcompat; Owner: -
--

ALTER TABLE ONLY lbcompat.customer
    ADD CONSTRAINT customer_pkey PRIMARY KEY (id);


--
-- Name: order order_pkey; Type: CONSTRAINT; Schema: lbcompat; Owner: -
--

ALTER TABLE ONLY lbcompat."order"
    ADD CONSTRAINT order_pkey PRIMARY KEY (id);


--
-- PostgreSQL database dump complete
--

\unrestrict NqSHZGfmOMqE2DbQKcfwyMR6fTGUjSK670ibRUtbh2eyTVkP6UWG4k8K5G2ad1W

