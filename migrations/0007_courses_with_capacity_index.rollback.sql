DROP INDEX courses_with_capacity_idx;
