package main

func benchPlan(rows int, changed float64, repeat int) error { return nil }
