# The user image: tags are content addresses (tree-<git tree id>), so a tag
# never needs to move and IMMUTABLE catches any attempt to.

resource "aws_ecr_repository" "user_image" {
  name                 = var.ecr_repository
  image_tag_mutability = "IMMUTABLE"

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = aws_kms_key.platform.arn
  }
}

resource "aws_ecr_lifecycle_policy" "user_image" {
  repository = aws_ecr_repository.user_image.name

  policy = jsonencode({
    rules = [
      {
        rulePriority = 1
        description  = "Untagged layers of failed or replaced pushes"
        selection = {
          tagStatus   = "untagged"
          countType   = "sinceImagePushed"
          countUnit   = "days"
          countNumber = 7
        }
        action = { type = "expire" }
      },
      {
        rulePriority = 2
        description  = "Keep the most recent tagged images (prod runs one staging ran)"
        selection = {
          tagStatus      = "tagged"
          tagPatternList = ["*"]
          countType      = "imageCountMoreThan"
          countNumber    = var.ecr_keep_images
        }
        action = { type = "expire" }
      },
    ]
  })
}
